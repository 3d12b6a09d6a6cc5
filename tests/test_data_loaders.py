"""Data loaders on small files written here: IDX, CIFAR pickles, image folders, GTSRB, npz, synthetic."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image

from backdoorlab.data import DATASETS, ImageData, Splits, load_dataset, read_idx
from backdoorlab.data.cifar import CIFAR10_CLASSES, read_cifar10
from backdoorlab.data.idx import FASHION_MNIST_CLASSES, fashion_mnist_available, load_idx_pair
from backdoorlab.data.npz import infer_layout, read_npz
from backdoorlab.data.synthetic import SIGN_CLASSES, make_signs, render_signs
from backdoorlab.errors import DataError

RNG = np.random.default_rng(0)


def _raises(match_file: str | Path, fn, *args, **kwargs) -> str:
    """Call ``fn``; assert it raises ``DataError`` naming ``match_file``; return the message."""
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    name = Path(match_file).name
    assert name in msg, f"{name!r} not in {msg!r}"
    assert "\n" not in msg
    return msg


# --------------------------------------------------------------------------- IDX


def _idx_bytes(a: np.ndarray) -> bytes:
    head = struct.pack(">BBBB", 0, 0, 0x08, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape)
    return head + a.astype(np.uint8).tobytes()


def _write_idx(path: Path, a: np.ndarray, gz: bool = False) -> Path:
    raw = _idx_bytes(a)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def _write_mnist_dir(root: Path, n_train: int = 6, n_test: int = 4, gz: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    sfx = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(root / f"{split}-images-idx3-ubyte{sfx}", RNG.integers(0, 256, (n, 28, 28)), gz)
        _write_idx(root / f"{split}-labels-idx1-ubyte{sfx}", np.arange(n) % 10, gz)
    return root


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_raw_and_gz(tmp_path: Path, gz: bool) -> None:
    a = RNG.integers(0, 256, (3, 5, 7)).astype(np.uint8)
    p = _write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), a, gz)
    np.testing.assert_array_equal(read_idx(p), a)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_mnist_like_loaders(tmp_path: Path, name: str) -> None:
    root = _write_mnist_dir(tmp_path / "m", gz=(name == "mnist"))
    s = load_dataset(name, root)
    assert (len(s.train), len(s.test)) == (6, 4)
    assert s.train.shape == (1, 28, 28) and s.train.x.dtype == torch.float32
    assert s.train.y.tolist() == [0, 1, 2, 3, 4, 5]
    if name == "fashion-mnist":
        assert s.train.classes == FASHION_MNIST_CLASSES


@pytest.mark.skipif(not fashion_mnist_available(), reason="Fashion-MNIST not installed")
def test_real_fashion_mnist() -> None:
    s = load_dataset("fashion-mnist")
    assert (len(s.train), len(s.test)) == (60000, 10000)
    assert s.train.shape == (1, 28, 28) and s.test.shape == (1, 28, 28)
    assert float(s.train.x.min()) >= 0 and float(s.train.x.max()) <= 1
    assert torch.bincount(s.test.y).tolist() == [1000] * 10


def test_idx_truncated(tmp_path: Path) -> None:
    p = tmp_path / "trunc-idx3-ubyte"
    p.write_bytes(_idx_bytes(np.zeros((4, 28, 28)))[:-10])
    assert "truncated" in _raises(p, read_idx, p)


def test_idx_bad_magic(tmp_path: Path) -> None:
    p = tmp_path / "magic-idx3-ubyte"
    p.write_bytes(b"\x12\x34" + _idx_bytes(np.zeros((2, 3, 3)))[2:])
    assert "magic" in _raises(p, read_idx, p)


def test_idx_corrupt_gzip(tmp_path: Path) -> None:
    p = tmp_path / "bad-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(_idx_bytes(RNG.integers(0, 256, (4, 28, 28))))[:-30])  # truncated
    assert "gzip" in _raises(p, read_idx, p)
    q = tmp_path / "crc-idx3-ubyte.gz"
    good = bytearray(gzip.compress(_idx_bytes(np.zeros((2, 3, 3)))))
    good[-8] ^= 0xFF  # bad CRC
    q.write_bytes(bytes(good))
    assert "gzip" in _raises(q, read_idx, q)


def test_idx_corrupt_deflate_stream(tmp_path: Path) -> None:
    p = tmp_path / "deflate-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(_idx_bytes(np.zeros((2, 3, 3))))[:20] + b"garbage!" * 4)
    assert "gzip" in _raises(p, read_idx, p)


def test_idx_count_mismatch(tmp_path: Path) -> None:
    xi = _write_idx(tmp_path / "x-idx3-ubyte", np.zeros((5, 4, 4)))
    yi = _write_idx(tmp_path / "y-idx1-ubyte", np.zeros(4))
    _raises(yi, load_idx_pair, xi, yi, ["a", "b"], "t")


def test_idx_labels_out_of_range(tmp_path: Path) -> None:
    root = _write_mnist_dir(tmp_path / "m", gz=False)
    bad = root / "train-labels-idx1-ubyte"
    _write_idx(bad, np.array([0, 1, 2, 3, 4, 10]))
    assert "[0, 9]" in _raises(bad, load_dataset, "mnist", root)


# --------------------------------------------------------------------------- CIFAR-10


def _cifar_batch(n: int, key_type: type = bytes, labels: object = None) -> dict:
    k = (lambda s: s.encode()) if key_type is bytes else (lambda s: s)
    return {
        k("batch_label"): b"testing batch",
        k("data"): RNG.integers(0, 256, (n, 3072), dtype=np.uint8),
        k("labels"): list(range(n)) if labels is None else labels,
        k("filenames"): [f"img_{i}.png".encode() for i in range(n)],
    }


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined,misc]
    """Writes str/bytes as Python 2 ``str`` (BINSTRING), like the original CIFAR-10 files."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_str(self, obj: str | bytes) -> None:
        b = obj.encode("latin1") if isinstance(obj, str) else obj
        head = (
            pickle.SHORT_BINSTRING + bytes([len(b)])
            if len(b) < 256
            else (pickle.BINSTRING + struct.pack("<i", len(b)))
        )
        self.write(head + b)

    dispatch[str] = save_str
    dispatch[bytes] = save_str


def _py2_pickle(obj: object) -> bytes:
    f = io.BytesIO()
    _Py2Pickler(f, protocol=2).dump(obj)
    return f.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def _write_cifar(folder: Path, n: int = 3, **overrides: object) -> Path:
    """Batches in three pickle dialects: Python 2 (as shipped), Python 3 protocol 4 and 5."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, f in enumerate(names):
        obj = overrides.get(f, _cifar_batch(n, bytes if i % 2 else str))
        raw = _py2_pickle(obj) if i % 3 == 0 else pickle.dumps(obj, protocol=4 + i % 2)
        (folder / f).write_bytes(raw)
    meta = {"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": n, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(_py2_pickle(meta))
    return folder


def test_cifar_folder_layouts(tmp_path: Path) -> None:
    d = _write_cifar(tmp_path / "a" / "cifar-10-batches-py")
    raw = pickle.loads((d / "data_batch_1").read_bytes(), encoding="bytes")
    for root in (d, tmp_path / "a"):
        s = load_dataset("cifar10", root)
        assert (len(s.train), len(s.test)) == (15, 3)
        assert s.train.shape == (3, 32, 32) and s.train.classes == CIFAR10_CLASSES
        data = raw[b"data"]
        assert s.train.x[1, 0, 0, 0] == pytest.approx(data[1, 0] / 255)
        assert s.train.x[1, 1, 0, 0] == pytest.approx(data[1, 1024] / 255)  # G plane
        assert s.train.x[1, 2, 31, 31] == pytest.approx(data[1, 3071] / 255)
        assert s.train.y[:3].tolist() == [0, 1, 2]


def test_cifar_tar_gz(tmp_path: Path) -> None:
    d = _write_cifar(tmp_path / "src" / "cifar-10-batches-py")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(d, arcname="cifar-10-batches-py")
    s = read_cifar10(archive)
    assert (len(s.train), len(s.test)) == (15, 3)
    ref = read_cifar10(d)
    assert torch.equal(s.train.x, ref.train.x) and torch.equal(s.test.y, ref.test.y)
    # the folder holding the archive works too, and nothing was extracted next to it
    holder = tmp_path / "holder"
    holder.mkdir()
    archive.rename(holder / archive.name)
    assert len(load_dataset("cifar10", holder).train) == 15
    assert sorted(p.name for p in holder.iterdir()) == ["cifar-10-python.tar.gz"]


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.marker), "w"))


def test_cifar_malicious_pickle_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = _cifar_batch(3)
    evil[b"batch_label"] = _Evil(marker)
    d = _write_cifar(tmp_path / "c", data_batch_1=evil)
    # the payload is live: plain pickle.loads would run it
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Evil(probe)))
    assert probe.exists()
    msg = _raises(d / "data_batch_1", load_dataset, "cifar10", d)
    assert "refused global" in msg
    assert not marker.exists()


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ({b"data": np.zeros((3, 3000), np.uint8), b"labels": [0, 1, 2]}, "(N, 3072)"),
        ({b"data": np.zeros((3, 3072), np.float32), b"labels": [0, 1, 2]}, "uint8"),
        ({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1]}, "2 labels for 3 images"),
        ({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 10]}, "[0, 9]"),
        ({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, -1, 2]}, "[0, 9]"),
        ({b"data": np.zeros((3, 3072), np.uint8)}, "no 'labels'"),
        ([1, 2, 3], "dict"),
    ],
)
def test_cifar_bad_batch(tmp_path: Path, bad: object, needle: str) -> None:
    d = _write_cifar(tmp_path / "c", data_batch_2=bad)
    assert needle in _raises(d / "data_batch_2", read_cifar10, d)


def test_cifar_missing_and_corrupt_files(tmp_path: Path) -> None:
    d = _write_cifar(tmp_path / "c")
    (d / "data_batch_3").unlink()
    assert "not found" in _raises(d / "data_batch_3", read_cifar10, d)
    d = _write_cifar(tmp_path / "d")
    (d / "test_batch").write_bytes((d / "test_batch").read_bytes()[:100])
    _raises(d / "test_batch", read_cifar10, d)
    bad_tar = tmp_path / "broken.tar.gz"
    bad_tar.write_bytes(b"\x1f\x8b\x08\x00" + b"junk" * 10)
    _raises(bad_tar, read_cifar10, bad_tar)
    _raises(tmp_path / "nowhere", read_cifar10, tmp_path / "nowhere")


# --------------------------------------------------------------------------- image folders


def _img(
    path: Path, size: tuple[int, int] = (8, 8), mode: str = "RGB", fill: object = None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fill is None:
        c = 3 if mode == "RGB" else 1
        a = RNG.integers(0, 256, (size[1], size[0], c), dtype=np.uint8).squeeze(
            -1 if c == 1 else ()
        )
        Image.fromarray(a, mode).save(path)
    else:
        Image.new(mode, size, fill).save(path)  # type: ignore[arg-type]


def test_folder_tree_split_and_channels(tmp_path: Path) -> None:
    for i in range(5):
        _img(tmp_path / "t" / "cat" / f"{i}.png")
        _img(tmp_path / "t" / "dog" / f"{i}.bmp", mode="L")
    s = load_dataset(str(tmp_path / "t"))  # a folder path routes to the "folder" loader
    assert s.train.classes == ["cat", "dog"]
    assert (len(s.train), len(s.test)) == (8, 2)
    assert s.train.shape == (3, 8, 8)
    # grey images are replicated to 3 channels
    dogs = s.train.x[s.train.y == 1]
    assert torch.equal(dogs[:, 0], dogs[:, 1]) and torch.equal(dogs[:, 1], dogs[:, 2])
    s1 = load_dataset("folder", tmp_path / "t", channels=1, test_fraction=0.5, seed=3)
    assert s1.train.shape == (1, 8, 8) and len(s1.test) == 5


def test_folder_grey_only_and_sizes(tmp_path: Path) -> None:
    _img(tmp_path / "g" / "a" / "1.png", mode="L")
    _img(tmp_path / "g" / "b" / "2.png", (9, 8), mode="L")
    msg = _raises("2.png", load_dataset, "folder", tmp_path / "g")
    assert "size=" in msg
    s = load_dataset("folder", tmp_path / "g", size=6)
    assert s.train.shape == (1, 6, 6) and len(s.train) + len(s.test) == 2


def test_folder_train_test_subfolders(tmp_path: Path) -> None:
    for split, n in (("train", 3), ("test", 2), ("val", 1)):
        for c in ("x", "y"):
            for i in range(n):
                _img(tmp_path / "r" / split / c / f"{i}.jpg", fill=(200, 10, 10))
    s = load_dataset("folder", tmp_path / "r")
    assert (len(s.train), len(s.test)) == (6, 4)
    assert s.val is not None and len(s.val) == 2
    assert s.train.classes == ["x", "y"] and s.test.y.tolist() == [0, 0, 1, 1]
    assert s.train.x[0, 0].mean() > 0.7  # JPEG roughly keeps the red fill


def test_folder_bad_cases(tmp_path: Path) -> None:
    _img(tmp_path / "c" / "a" / "ok.png")
    bad = tmp_path / "c" / "a" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    _raises(bad, load_dataset, "folder", tmp_path / "c")
    (tmp_path / "empty").mkdir()
    _raises("empty", load_dataset, "folder", tmp_path / "empty")
    (tmp_path / "e2" / "cls").mkdir(parents=True)
    _raises("cls", load_dataset, "folder", tmp_path / "e2")


# --------------------------------------------------------------------------- GTSRB


def _gtsrb_image(path: Path, roi: tuple[int, int, int, int], w: int = 14, h: int = 12) -> None:
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 2] = 255  # blue outside the ROI
    x1, y1, x2, y2 = roi
    a[y1 : y2 + 1, x1 : x2 + 1] = (255, 0, 0)  # red sign, ROI inclusive
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


def _gt_csv(path: Path, rows: list[tuple[str, tuple[int, int, int, int], int]]) -> None:
    lines = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    lines += [f"{f};14;12;{r[0]};{r[1]};{r[2]};{r[3]};{c}" for f, r, c in rows]
    path.write_text("\n".join(lines) + "\n")


def _write_gtsrb(root: Path, with_test: bool) -> Path:
    base = root / "GTSRB"
    roi = (3, 2, 10, 9)
    for cls in (0, 2):
        d = base / "Final_Training" / "Images" / f"{cls:05d}"
        rows = []
        for track in range(3):
            for frame in range(2):
                name = f"{track:05d}_{frame:05d}.ppm"
                _gtsrb_image(d / name, roi)
                rows.append((name, roi, cls))
        _gt_csv(d / f"GT-{cls:05d}.csv", rows)
    if with_test:
        d = base / "Final_Test" / "Images"
        rows = []
        for i in range(4):
            _gtsrb_image(d / f"{i:05d}.ppm", roi)
            rows.append((f"{i:05d}.ppm", roi, 2 * (i % 2)))
        _gt_csv(d / "GT-final_test.csv", rows)
    return root


def test_gtsrb_roi_crop_and_test_set(tmp_path: Path) -> None:
    s = load_dataset("gtsrb", _write_gtsrb(tmp_path, with_test=True), size=4)
    assert (len(s.train), len(s.test)) == (12, 4)
    assert s.train.shape == (3, 4, 4) and s.train.num_classes == 43
    assert s.train.classes[14] == "Stop"
    assert torch.allclose(s.train.x[:, 0], torch.ones(1)) and s.train.x[:, 2].max() == 0
    assert sorted(set(s.train.y.tolist())) == [0, 2] and s.test.y.tolist() == [0, 2, 0, 2]


def test_gtsrb_track_split_without_test(tmp_path: Path) -> None:
    s = load_dataset("gtsrb", _write_gtsrb(tmp_path, with_test=False), test_fraction=0.34)
    assert s.train.shape == (3, 32, 32)
    assert len(s.train) + len(s.test) == 12 and len(s.test) == 4  # 2 of 6 tracks, 2 frames each


def test_gtsrb_bad_files(tmp_path: Path) -> None:
    root = _write_gtsrb(tmp_path, with_test=False)
    d = root / "GTSRB" / "Final_Training" / "Images" / "00002"
    (d / "00001_00001.ppm").write_bytes(b"P6\n14 12\n255\n" + b"\x00" * 7)
    _raises("00001_00001.ppm", load_dataset, "gtsrb", root)
    (d / "GT-00002.csv").write_text("Filename;Width\nx.ppm;3\n")
    _raises("GT-00002.csv", load_dataset, "gtsrb", root)
    _raises("nothing", load_dataset, "gtsrb", tmp_path / "nothing")


# --------------------------------------------------------------------------- npz


@pytest.mark.parametrize(
    ("shape", "layout"),
    [
        ((5, 28, 28), "NHW"),
        ((5, 32, 32, 3), "NHWC"),
        ((5, 3, 32, 32), "NCHW"),
        ((5, 1, 8, 8), "NCHW"),
        ((5, 8, 8, 1), "NHWC"),
        ((5, 3, 3, 1), "NHWC"),
        ((5, 3, 4, 4), "NCHW"),
    ],
)
def test_npz_layouts(tmp_path: Path, shape: tuple[int, ...], layout: str) -> None:
    assert infer_layout(shape) == layout
    x = RNG.integers(0, 256, shape, dtype=np.uint8)
    p = tmp_path / "d.npz"
    np.savez(p, x=x, y=np.arange(5) % 2, classes=np.array(["neg", "pos"]))
    c = read_npz(p)
    ref = x[:, None] if layout == "NHW" else x.transpose(0, 3, 1, 2) if layout == "NHWC" else x
    assert c.x.shape == ref.shape and c.classes == ["neg", "pos"]
    np.testing.assert_allclose(c.x.numpy(), ref / 255.0, atol=1e-7)
    assert c.y is not None and c.y.dtype == torch.long


def test_npz_float_unlabelled_and_loader(tmp_path: Path) -> None:
    p = tmp_path / "f.npz"
    x = RNG.random((10, 3, 6, 6)).astype(np.float32)
    np.savez_compressed(p, x=x)
    c = read_npz(p)
    assert c.y is None and c.classes is None and torch.equal(c.x, torch.from_numpy(x))
    assert "no 'y' array; labels are needed to train" in _raises(p, load_dataset, str(p))
    np.savez(p, x=x, y=np.arange(10) % 3)
    s = load_dataset(str(p), test_fraction=0.3)
    assert (len(s.train), len(s.test)) == (7, 3) and s.train.classes == ["0", "1", "2"]
    np.savez(p, x=x, y=np.arange(10) % 3, x_test=x[:4], y_test=np.array([0, 1, 2, 3]))
    s = load_dataset("npz", p)
    assert (len(s.train), len(s.test)) == (10, 4) and s.test.num_classes == 4


@pytest.mark.parametrize(
    ("arrays", "needle"),
    [
        ({"y": np.zeros(3, np.int64)}, "no 'x'"),
        ({"x": np.zeros((3, 4), np.uint8)}, "'x'"),
        ({"x": np.zeros((3, 4, 4), np.int64)}, "dtype int64"),
        ({"x": np.full((3, 4, 4), 1.5, np.float32)}, "[0, 1]"),
        ({"x": np.zeros((3, 4, 4, 5), np.uint8)}, "1 or 3 channels"),
        ({"x": np.zeros((3, 4, 4), np.uint8), "y": np.zeros(2, np.int64)}, "2 labels for 3"),
        ({"x": np.zeros((3, 4, 4), np.uint8), "y": np.array([0, -1, 0])}, ">= 0"),
        ({"x": np.zeros((3, 4, 4), np.uint8), "y": np.zeros(3, np.float32)}, "integer"),
        (
            {
                "x": np.zeros((3, 4, 4), np.uint8),
                "y": np.array([0, 1, 2]),
                "classes": np.array(["a", "b"]),
            },
            "[0, 1]",
        ),
    ],
)
def test_npz_bad_contents(tmp_path: Path, arrays: dict, needle: str) -> None:
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    assert needle in _raises(p, read_npz, p)


def test_npz_object_array_not_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    p = tmp_path / "obj.npz"
    np.savez(p, x=np.zeros((2, 4, 4), np.uint8), y=np.array([_Evil(marker), 1], dtype=object))
    assert "object array" in _raises(p, read_npz, p)
    assert not marker.exists()


def test_npz_not_a_zip(tmp_path: Path) -> None:
    p = tmp_path / "plain.npz"
    p.write_bytes(b"this is not a zip archive")
    _raises(p, read_npz, p)
    q = tmp_path / "arr.npz"
    with q.open("wb") as f:
        np.save(f, np.zeros((2, 4, 4), np.uint8))  # a .npy saved under a .npz name
    _raises(q, load_dataset, str(q))


# --------------------------------------------------------------------------- synthetic signs


def test_synthetic_signs_deterministic() -> None:
    signs = DATASETS.get("synthetic-signs")  # load_dataset keeps ``seed`` for its own val split
    a, b, c = signs(48, 16, seed=1), signs(48, 16, seed=1), signs(48, 16, seed=2)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.x, c.train.x)
    assert not torch.equal(a.train.x[:16], a.test.x)
    assert a.train.shape == (3, 32, 32) and a.train.num_classes == len(SIGN_CLASSES) >= 12
    assert float(a.train.x.min()) >= 0 and float(a.train.x.max()) <= 1
    assert torch.bincount(a.train.y, minlength=len(SIGN_CLASSES)).tolist() == [3] * 16
    assert all(len(c.split("-")) == 3 for c in SIGN_CLASSES) and "red-circle-bar" in SIGN_CLASSES
    # the test set does not depend on the size of the training set
    assert torch.equal(a.test.x, signs(5, 16, seed=1).test.x)
    s = load_dataset("synthetic-signs", n_train=20, n_test=10, val_fraction=0.25)
    assert (len(s.train), len(s.test)) == (15, 10) and s.val is not None and len(s.val) == 5


def test_synthetic_signs_classes_differ() -> None:
    x = render_signs(torch.arange(len(SIGN_CLASSES)).repeat(4), seed=0)
    assert x.shape == (4 * len(SIGN_CLASSES), 3, 32, 32)
    assert make_signs(0).x.shape == (0, 3, 32, 32)
    assert "synthetic-signs" in DATASETS and "cifar10" in DATASETS and "gtsrb" in DATASETS


# --------------------------------------------------------------------------- ImageData


def test_imagedata_split_per_class_subset() -> None:
    d = ImageData(torch.rand(20, 1, 4, 4), torch.arange(20) % 4, name="t")
    a, b = d.split([0.75, 0.25], seed=0)
    assert (len(a), len(b)) == (15, 5)
    all_idx = torch.cat([a.x, b.x]).flatten(1)
    assert torch.unique(all_idx, dim=0).shape[0] == 20  # disjoint and complete
    a2, _ = d.split([0.75, 0.25], seed=0)
    assert torch.equal(a.x, a2.x)
    assert len(d.split([0.5], seed=1)[0]) == 10
    with pytest.raises(DataError):
        d.split([0.8, 0.5])
    pc = d.per_class(2, seed=0)
    assert torch.bincount(pc.y).tolist() == [2, 2, 2, 2]
    assert len(d.per_class(100)) == 20
    assert d.subset(d.y == 1).y.tolist() == [1] * 5
    assert d.subset([0, 5]).y.tolist() == [0, 1]
    assert len(d.subset(slice(0, 3))) == 3 and d.subset([3]).classes == d.classes
    with pytest.raises(DataError, match="labels must lie"):
        ImageData(torch.rand(2, 1, 4, 4), torch.tensor([0, 3]), classes=["a", "b"])
    assert isinstance(Splits(train=d, test=d).train, ImageData)
