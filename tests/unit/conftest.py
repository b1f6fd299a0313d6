import pytest


@pytest.fixture(autouse=True)
def _no_subprocess(monkeypatch):
    """Unit tests must not run docker or any other program."""
    import netship.proc

    def refuse(argv, **kw):
        raise AssertionError(f"unit test tried to run a subprocess: {list(argv)!r}")

    monkeypatch.setattr(netship.proc, "run", refuse)
