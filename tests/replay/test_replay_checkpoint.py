"""Checkpoints: a round trip restores items, sample counts and limiter counters; writes are atomic."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spiral.replay import Fifo, MinSize, SampleToInsertRatio, Table, load_tables, restore_tables, save_tables
from spiral.replay import checkpoint as checkpoint_module
from spiral.errors import InvalidArgumentError


def make_table(max_size: int = 100) -> Table:
    return Table("fakes", max_size=max_size, sampler=Fifo(), rate_limiter=SampleToInsertRatio(1.0, 1, 50.0))


def fill(table: Table, n: int, *, with_target: bool = True) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    items = []
    for _ in range(n):
        data = {"canvas": torch.randint(0, 256, (1, 8, 8), dtype=torch.uint8, generator=gen)}
        if with_target:
            data["target"] = torch.rand(1, 8, 8, generator=gen)
        items.append(data)
        table.insert(data)
    return items


def test_round_trip_restores_items_counts_and_continues_keys(tmp_path: Path) -> None:
    table = make_table()
    items = fill(table, 6)
    table.sample(3)  # item 0 sampled 3 times
    result = save_tables({"fakes": table}, tmp_path / "r.ckpt")
    assert result.num_items == 6 and result.num_bytes == (tmp_path / "r.ckpt").stat().st_size

    restored = make_table()
    assert restore_tables({"fakes": restored}, result.path) == 6
    before, after = table.info(), restored.info()
    assert after == before
    first = restored.sample(1)[0]
    assert first.key == 0 and first.times_sampled == 4
    assert torch.equal(first.data["canvas"], items[0]["canvas"]) and torch.equal(first.data["target"], items[0]["target"])
    assert restored.insert({"canvas": items[0]["canvas"], "target": items[0]["target"]}) == 6, "keys continue after a restore"


def test_items_with_different_layouts_round_trip(tmp_path: Path) -> None:
    table = make_table()
    table.insert({"canvas": torch.zeros(1, 4, 4)})
    table.insert({"canvas": torch.ones(3, 2, 2), "target": torch.ones(3, 2, 2)})
    save_tables({"fakes": table}, tmp_path / "r.ckpt")
    restored = make_table()
    restore_tables({"fakes": restored}, tmp_path / "r.ckpt")
    got = [s.data for s in (restored.sample(1)[0],)]
    assert torch.equal(got[0]["canvas"], torch.zeros(1, 4, 4))
    assert restored.size == 2


def test_restore_into_a_smaller_table_keeps_the_newest(tmp_path: Path) -> None:
    table = make_table()
    fill(table, 5, with_target=False)
    save_tables({"fakes": table}, tmp_path / "r.ckpt")
    small = Table("fakes", max_size=2, sampler=Fifo(), rate_limiter=MinSize(1))
    assert restore_tables({"fakes": small}, tmp_path / "r.ckpt") == 2
    assert small.sample(1)[0].key == 3


def test_failed_write_leaves_the_previous_checkpoint_and_no_temp_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = make_table()
    fill(table, 3)
    path = tmp_path / "r.ckpt"
    save_tables({"fakes": table}, path)
    good = path.read_bytes()
    fill(table, 2)

    def broken_save(obj, f) -> None:  # noqa: ANN001
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", broken_save)
    with pytest.raises(OSError, match="No space left"):
        save_tables({"fakes": table}, path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["r.ckpt"]


def test_corrupt_or_foreign_files_are_refused_with_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidArgumentError, match=r"bad\.ckpt is not a readable replay checkpoint"):
        load_tables(bad)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"format": 99, "tables": {}}, foreign)
    with pytest.raises(InvalidArgumentError, match="format 99; this release reads format 1"):
        load_tables(foreign)
    with pytest.raises(FileNotFoundError):
        load_tables(tmp_path / "missing.ckpt")
