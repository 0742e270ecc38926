import pytest

from coldstream.atomic import atomic_write, atomic_write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "state.json"
    atomic_write_text(path, "old")

    def crash(f):
        f.write(b"half of the new")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(path, crash)
    assert path.read_text() == "old"
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
