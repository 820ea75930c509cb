"""The traffic-history loader: layouts, repairs (reported) and errors (file:line:column)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from vnstitch.forecast import DataError, load_series


def write(tmp_path: Path, name: str, text: str, gz: bool = False) -> Path:
    p = tmp_path / name
    if gz:
        p.write_bytes(gzip.compress(text.encode()))
    else:
        p.write_text(text)
    return p


def test_wide_gzip_and_long_layouts(tmp_path: Path) -> None:
    wide = write(tmp_path, "w.csv.gz", "time,a->b,c->d\n20040301-0000,1,2\n"
                 "20040301-0005,3,4\n20040301-0010,5,0\n", gz=True)
    d = load_series(wide)
    assert d.names == ["a->b", "c->d"]
    assert d.step_seconds == 300
    assert d.values.shape == (3, 2)
    assert d.repairs == []
    assert d.notes == ["1 zero value(s) kept as valid measurements"]
    long = write(tmp_path, "cpu_x.csv", "timestamp,value\n2014-02-14 14:30:00,0.5\n"
                 "2014-02-14 14:35:00,0.7\n")
    d2 = load_series(long)
    assert d2.names == ["cpu_x"]
    np.testing.assert_allclose(d2.values[:, 0], [0.5, 0.7])
    assert str(d2.times[1]) == "2014-02-14T14:35:00"


def test_gaps_nan_duplicates_are_repaired_and_reported(tmp_path: Path) -> None:
    p = write(tmp_path, "g.csv", "timestamp,value\n2014-01-01 00:00:00,1\n"
              "2014-01-01 00:05:00,nan\n2014-01-01 00:10:00,3\n"
              "2014-01-01 00:10:00,5\n2014-01-01 00:25:00,10\n")
    d = load_series(p)
    np.testing.assert_allclose(d.values[:, 0], [1, 2.5, 4, 6, 8, 10])
    text = " | ".join(d.repairs)
    assert "duplicate" in text and "missing time step" in text and "filled" in text


def test_long_gap_uses_seasonal_fill(tmp_path: Path) -> None:
    rows = ["time,x"]
    for t in range(40):
        if 22 <= t < 32:
            continue
        rows.append(f"20040301-{t // 12:02d}{(t % 12) * 5:02d},{t % 10}")
    d = load_series(write(tmp_path, "s.csv", "\n".join(rows) + "\n"), season=10,
                    max_interpolate=3)
    np.testing.assert_allclose(d.values[22:32, 0], np.arange(22, 32) % 10)


@pytest.mark.parametrize(("body", "where"), [
    ("20040301-0000,1,2\n20040301-0005,x,4\n", ":3: column 'a': not a number"),
    ("20040301-0000,1,2\n2004-0301,3,4\n", ":3: column 'time': unrecognised timestamp"),
    ("20040301-0005,1,2\n20040301-0000,3,4\n", ":3: column 'time': timestamp"),
    ("20040301-0000,1,2\n20040301-0005,3,-4\n", ":3: column 'b': negative value"),
    ("20040301-0000,1,2\n20040301-0005,3\n", ":3: expected 3 cells"),
    ("20040301-0000,1,2\n20040301-0005,inf,2\n", ":3: column 'a': infinite"),
])
def test_bad_input_names_line_and_column(tmp_path: Path, body: str, where: str) -> None:
    p = write(tmp_path, "bad.csv", "time,a,b\n" + body)
    with pytest.raises(DataError, match=r"bad\.csv" + where.replace("(", r"\(")):
        load_series(p)


def test_negative_clip_is_reported(tmp_path: Path) -> None:
    p = write(tmp_path, "n.csv", "time,a\n20040301-0000,1\n20040301-0005,-2\n")
    d = load_series(p, negative="clip")
    assert d.values[1, 0] == 0
    assert any("clipped" in r for r in d.repairs)


def test_bad_header_and_empty_column(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r":1: header"):
        load_series(write(tmp_path, "h.csv", "foo,bar\n1,2\n"))
    with pytest.raises(DataError, match=r"column 'b': no valid value"):
        load_series(write(tmp_path, "e.csv", "time,a,b\n20040301-0000,1,\n20040301-0005,2,nan\n"))
    with pytest.raises(DataError, match="cannot read"):
        load_series(tmp_path / "missing.csv")


@pytest.mark.data
def test_real_files_load(data_dir: Path) -> None:
    d = load_series(data_dir / "abilene" / "abilene_tm_5min.csv.gz")
    assert d.values.shape == (4032, 132)
    assert d.repairs == []
    disk = load_series(data_dir / "cloudwatch" / "ec2_disk_write_bytes_1ef3de.csv")
    assert any("duplicate" in r for r in disk.repairs)
    assert np.isfinite(disk.values).all()
