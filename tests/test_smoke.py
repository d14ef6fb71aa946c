"""The smoke switch reads LSQLAB_SMOKE first, then CI."""

import pytest

from lsqlab.lab.smoke import smoke_from_env


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"LSQLAB_SMOKE": "1"}, True),
        ({"LSQLAB_SMOKE": "Yes"}, True),
        ({"CI": "true"}, True),
        ({"CI": "0"}, False),
        ({"LSQLAB_SMOKE": "0", "CI": "true"}, False),
        ({"LSQLAB_SMOKE": "", "CI": "true"}, False),
    ],
)
def test_smoke_from_env(environ, expected):
    assert smoke_from_env(environ) is expected
