import os

import pytest

IN_CI = os.environ.get("CI") == "true"


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", help="rewrite the golden .tex files")


@pytest.fixture
def update_golden(request):
    return request.config.getoption("--update-golden")
