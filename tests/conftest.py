import os

import pytest

IN_CI = os.environ.get("CI") == "true"


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", help="rewrite the golden .tex files")


@pytest.fixture
def update_golden(request):
    return request.config.getoption("--update-golden")


def dense_examples():
    """The built-in examples of dense chains: the forms (Markdown, HTML, slides), the readback of printed
    lines and the golden documents of derive/blocks networks are their own tests (tests/test_blocks.py)."""
    from derive.documents import builtin_examples
    from derive.spec import NetworkSpec

    return [spec for spec in builtin_examples() if isinstance(spec, NetworkSpec)]
