"""The gathered logit stores: only data types of the Zarr v3 specification, and stores of before still read."""

import warnings

import numpy as np
import zarr

from prunekd.selection.controls import random_subset
from prunekd.teachers.logit_store import decode_ids, encode_ids, ids, write_ids

IDS = ["--PJHxphWEs_30.000", "Yb0RFKhbpFJA.mp3", "airport-lisbon-1000-40000-0-a.wav", "", "café-ü"]


def _read_everything(path):
    g = zarr.open_group(str(path), mode="r")
    return {name: arr[:] for name, arr in g.arrays()}, g


def test_ids_round_trip_through_uint8_codes():
    codes = encode_ids(IDS)
    assert codes.dtype == np.uint8 and codes.shape == (len(IDS), max(len(i.encode()) for i in IDS))
    assert list(decode_ids(codes)) == IDS
    assert list(decode_ids(encode_ids([]))) == []


def test_a_store_of_today_opens_and_reads_without_the_unspecified_type_warning(tmp_path):
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any zarr warning (UnstableSpecificationWarning among them) fails here
        write_ids(g, IDS)
        g.create_array("row", data=np.arange(len(IDS), dtype=np.int64))
        arrays, g2 = _read_everything(tmp_path / "s.zarr")
        assert list(ids(g2)) == IDS
    assert arrays["id_utf8"].dtype == np.uint8 and "id" not in arrays


def test_a_store_written_before_with_str_ids_still_reads(tmp_path):
    # The layout gathered stores had before: `id` as numpy fixed-width unicode.
    g = zarr.open_group(str(tmp_path / "old.zarr"), mode="w")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g.create_array("id", data=np.array(IDS[:3]).astype(str))
    g.create_array("row", data=np.array([4, 7, 9], dtype=np.int64))
    old = zarr.open_group(str(tmp_path / "old.zarr"), mode="r")
    assert list(ids(old)) == IDS[:3]
    table = random_subset(old, np.arange(3), 2, seed=0, name="x")
    assert set(table["id"]) <= set(IDS[:3]) and list(table["row"]) == [[4, 7, 9][p] for p in table["position"]]
