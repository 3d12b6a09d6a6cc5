"""Image-folder data sets: a generic class-per-folder tree and the GTSRB layout.

GTSRB: J. Stallkamp, M. Schlipsing, J. Salmen & C. Igel, "The German Traffic Sign Recognition
Benchmark: A multi-class classification competition", IJCNN 2011.

Images are decoded with Pillow one file at a time (file IO is unavoidable) and stacked once into a
float ``(N, C, H, W)`` tensor in [0, 1].
"""

from __future__ import annotations

import csv
import itertools
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageMode

from ..errors import ConfigError, DataError
from ..utils import make_generator
from .core import ImageData, Splits, from_uint8
from .registry import DATASETS

IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".ppm",
    ".pgm",
    ".pbm",
    ".pnm",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
)

GTSRB_CLASSES = [
    "Speed limit (20km/h)", "Speed limit (30km/h)", "Speed limit (50km/h)",
    "Speed limit (60km/h)", "Speed limit (70km/h)", "Speed limit (80km/h)",
    "End of speed limit (80km/h)", "Speed limit (100km/h)", "Speed limit (120km/h)",
    "No passing", "No passing for vehicles over 3.5 metric tons",
    "Right-of-way at the next intersection", "Priority road", "Yield", "Stop", "No vehicles",
    "Vehicles over 3.5 metric tons prohibited", "No entry", "General caution",
    "Dangerous curve to the left", "Dangerous curve to the right", "Double curve", "Bumpy road",
    "Slippery road", "Road narrows on the right", "Road work", "Traffic signals", "Pedestrians",
    "Children crossing", "Bicycles crossing", "Beware of ice/snow", "Wild animals crossing",
    "End of all speed and passing limits", "Turn right ahead", "Turn left ahead", "Ahead only",
    "Go straight or right", "Go straight or left", "Keep right", "Keep left",
    "Roundabout mandatory", "End of no passing",
    "End of no passing by vehicles over 3.5 metric tons",
]  # fmt: skip

_DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    IndexError,
    TypeError,
    MemoryError,
    Image.DecompressionBombError,
)


# --------------------------------------------------------------------------- decoding


def _oneline(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0].rstrip(":") if lines else type(e).__name__


def _is_colour(im: Image.Image) -> bool:
    """Whether an opened image is colour (by mode; palette images by their actual colours)."""
    if im.mode in ("P", "PA"):
        a = np.asarray(im.convert("RGB"))
        return bool((a[..., 0] != a[..., 1]).any() or (a[..., 1] != a[..., 2]).any())
    return ImageMode.getmode(im.mode).basemode == "RGB"


def decode_image(
    path: Path,
    size: int | None = None,
    channels: int | None = None,
    crop: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """Decode one image file to uint8 ``(H, W)`` (grey) or ``(H, W, 3)`` (colour).

    ``channels`` forces grey (1) or RGB (3); ``None`` keeps grey images grey. ``crop`` is a PIL box
    ``(left, top, right, bottom)`` applied before resizing to ``size`` x ``size``.
    Unreadable or corrupt files raise ``DataError`` naming the file.
    """
    try:
        with Image.open(path) as im:
            im.load()
            colour = _is_colour(im) if channels is None else channels == 3
            out = im.convert("RGB" if colour else "L")
        if crop is not None:
            out = out.crop(crop)
        if size is not None and out.size != (size, size):
            out = out.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(out, dtype=np.uint8)
    except _DECODE_ERRORS as e:
        raise DataError(
            f"{path}: cannot decode image ({type(e).__name__}: {_oneline(e)})"
        ) from None


def stack_images(
    paths: Sequence[Path],
    size: int | None = None,
    channels: int | None = None,
    crops: Sequence[tuple[int, int, int, int] | None] | None = None,
) -> torch.Tensor:
    """Decode ``paths`` and stack them into float ``(N, C, H, W)`` in [0, 1].

    Without ``size`` all images must share one size (else ``DataError`` naming the first file that
    differs). Without ``channels`` the result is RGB if any image is colour, else grey.
    """
    if channels not in (None, 1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {channels}")
    if size is not None and (not isinstance(size, int) or size < 1):
        raise ConfigError(f"size must be a positive integer, got {size!r}")
    if not paths:
        raise DataError("no images to load")
    arrays: list[np.ndarray] = []
    first_shape: tuple[int, int] | None = None
    for i, p in enumerate(paths):
        a = decode_image(p, size, channels, crops[i] if crops is not None else None)
        hw = (int(a.shape[0]), int(a.shape[1]))
        if first_shape is None:
            first_shape = hw
        elif hw != first_shape:
            raise DataError(
                f"{p}: image is {hw[1]}x{hw[0]} but {paths[0].name} is "
                f"{first_shape[1]}x{first_shape[0]}; pass size=N to resize all images to N x N"
            )
        arrays.append(a)
    assert first_shape is not None
    h, w = first_shape
    colour_idx = [i for i, a in enumerate(arrays) if a.ndim == 3]
    grey_idx = [i for i, a in enumerate(arrays) if a.ndim == 2]
    c = 3 if colour_idx else 1
    out = np.empty((len(arrays), h, w, c), dtype=np.uint8)
    if colour_idx:
        out[colour_idx] = np.stack([arrays[i] for i in colour_idx])
    if grey_idx:
        out[grey_idx] = np.stack([arrays[i] for i in grey_idx])[..., None]  # broadcast to C
    return from_uint8(out, "NHWC")


# --------------------------------------------------------------------------- class folders


def _list_images(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _scan_tree(root: Path, classes: list[str] | None) -> tuple[list[Path], list[int], list[str]]:
    """Files and labels of a ``root/<class>/...`` tree; ``classes`` fixes the class order."""
    dirs = _class_dirs(root)
    if not dirs:
        loose = [p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS][:3]
        extra = (
            f" (found loose images {', '.join(loose)}; put them in root/<class>/)" if loose else ""
        )
        raise DataError(f"{root}: no class subfolders (expected {root}/<class>/*.png){extra}")
    names = [d.name for d in dirs]
    if classes is None:
        classes = names
    else:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DataError(f"{root}: class folder(s) {', '.join(unknown)} not in the training set")
    files: list[Path] = []
    labels: list[int] = []
    for d in dirs:
        imgs = _list_images(d)
        if not imgs:
            raise DataError(f"{d}: class folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        files += imgs
        labels += [classes.index(d.name)] * len(imgs)
    return files, labels, classes


def _data(
    files: list[Path],
    labels: list[int],
    classes: list[str],
    name: str,
    size: int | None,
    channels: int | None,
) -> ImageData:
    x = stack_images(files, size, channels)
    return ImageData(x, torch.tensor(labels, dtype=torch.long), classes=list(classes), name=name)


def _check_fraction(test_fraction: float) -> None:
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")


@DATASETS.register(
    "folder", "image tree root/<class>/*.png|jpg|... (optional root/train, root/test)"
)
def image_folder(
    root: str | os.PathLike[str] | None = None,
    size: int | None = None,
    channels: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Splits:
    """Class-per-folder images; ``root/train`` + ``root/test`` if present, else a seeded split.

    ``size`` resizes every image to ``size`` x ``size`` (default: all must already match);
    ``channels`` is 1 or 3 (default: 3 if any image is colour).
    """
    if root is None:
        raise DataError("folder: no folder given; pass --data-root DIR (DIR/<class>/*.png)")
    r = Path(root)
    if not r.is_dir():
        raise DataError(f"{r}: not a directory")
    if channels not in (None, 1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {channels}")
    name = r.name or "folder"
    if (r / "train").is_dir() and (r / "test").is_dir():
        parts = [_scan_tree(r / "train", None)]
        classes = parts[0][2]
        parts += [_scan_tree(r / sub, classes) for sub in ("test", "val") if (r / sub).is_dir()]
        # decode all splits together so that size and channel inference agree across them
        files = [f for p in parts for f in p[0]]
        labels = [y for p in parts for y in p[1]]
        full = _data(files, labels, classes, name, size, channels)
        bounds = np.cumsum([0] + [len(p[0]) for p in parts]).tolist()
        subsets = [full.subset(slice(a, b)) for a, b in itertools.pairwise(bounds)]
        return Splits(
            train=subsets[0], test=subsets[1], val=subsets[2] if len(subsets) > 2 else None
        )
    _check_fraction(test_fraction)
    files, labels, classes = _scan_tree(r, None)
    data = _data(files, labels, classes, name, size, channels)
    train, test = data.split([1 - test_fraction, test_fraction], seed=seed)
    return Splits(train=train, test=test)


# --------------------------------------------------------------------------- GTSRB


@dataclass
class _GtRow:
    path: Path
    crop: tuple[int, int, int, int] | None
    label: int | None


def _read_gt_csv(csv_path: Path, folder: Path, need_label: bool) -> list[_GtRow]:
    """Parse a GTSRB ``GT-*.csv`` (``;``-separated); the ROI is inclusive, clipped to the image."""
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{csv_path}: cannot read ({_oneline(e)})") from None
    reader = csv.DictReader(text.splitlines(), delimiter=";")
    cols = ["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2"]
    if need_label:
        cols.append("ClassId")
    missing = [c for c in cols if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(
            f"{csv_path}: missing column(s) {', '.join(missing)}; "
            f"expected Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"
        )
    rows = []
    for lineno, rec in enumerate(reader, start=2):
        if not any((v or "").strip() for v in rec.values() if isinstance(v, str)):
            continue
        try:
            w, h, x1, y1, x2, y2 = (int(rec[c]) for c in cols[1:7])
            label = int(rec["ClassId"]) if need_label else None
        except (TypeError, ValueError):
            raise DataError(
                f"{csv_path}: line {lineno}: non-integer size, ROI or ClassId"
            ) from None
        if not (0 <= x1 <= x2 and 0 <= y1 <= y2 and w > 0 and h > 0):
            raise DataError(f"{csv_path}: line {lineno}: bad ROI ({x1},{y1})-({x2},{y2})")
        fname = (rec["Filename"] or "").strip()
        if not fname or "/" in fname or "\\" in fname or fname.startswith("."):
            raise DataError(f"{csv_path}: line {lineno}: bad Filename {fname!r}")
        p = folder / fname
        if not p.is_file():
            raise DataError(f"{csv_path}: line {lineno}: image {fname} not found in {folder}")
        crop = (x1, y1, min(x2 + 1, w), min(y2 + 1, h))
        if crop[2] <= crop[0] or crop[3] <= crop[1]:
            raise DataError(f"{csv_path}: line {lineno}: empty ROI for {fname}")
        rows.append(_GtRow(p, crop, label))
    if not rows:
        raise DataError(f"{csv_path}: no rows")
    return rows


def _find_gtsrb(root: Path) -> Path:
    for cand in (root, root / "GTSRB"):
        if (cand / "Final_Training" / "Images").is_dir():
            return cand
    raise DataError(
        f"{root}: no GTSRB training images (expected {root}/[GTSRB/]Final_Training/Images/000NN/); "
        "get GTSRB_Final_Training_Images.zip from https://benchmark.ini.rub.de/gtsrb_dataset.html"
    )


def _gtsrb_train_rows(base: Path) -> list[_GtRow]:
    img_root = base / "Final_Training" / "Images"
    dirs = [d for d in _class_dirs(img_root) if d.name.isdigit()]
    if not dirs:
        raise DataError(f"{img_root}: no class folders 00000 .. 00042")
    rows: list[_GtRow] = []
    for d in dirs:
        cls = int(d.name)
        csv_path = d / f"GT-{d.name}.csv"
        if csv_path.is_file():
            drows = _read_gt_csv(csv_path, d, need_label=True)
            for r in drows:
                if r.label != cls:
                    raise DataError(f"{csv_path}: ClassId {r.label} in the folder of class {cls}")
        else:
            drows = [_GtRow(p, None, cls) for p in _list_images(d)]
        if not drows:
            raise DataError(f"{d}: class folder holds no images")
        rows += drows
    return rows


def _gtsrb_test_rows(base: Path) -> list[_GtRow] | None:
    test_dir = base / "Final_Test" / "Images"
    if not test_dir.is_dir():
        return None
    for cand in (
        test_dir / "GT-final_test.csv",
        base / "Final_Test" / "GT-final_test.csv",
        base / "GT-final_test.csv",
        base.parent / "GT-final_test.csv",
    ):
        if cand.is_file():
            return _read_gt_csv(cand, test_dir, need_label=True)
    return None  # only GT-final_test.test.csv (no labels) or no CSV: fall back to a split


def _track_split(
    rows: list[_GtRow], test_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Seeded split by physical track (``TTTTT_FFFFF.ppm``) so near-identical frames stay together."""
    keys = []
    for r in rows:
        m = re.match(r"(\d+)_\d+\.", r.path.name)
        keys.append((r.label, m.group(1) if m else r.path.name))
    uniq = sorted(set(keys), key=lambda k: (k[0] or 0, k[1]))
    index = {k: i for i, k in enumerate(uniq)}
    perm = torch.randperm(len(uniq), generator=make_generator(seed))
    n_test = max(1, round(test_fraction * len(uniq))) if len(uniq) > 1 else 0
    test_groups = set(perm[:n_test].tolist())
    test = [i for i, k in enumerate(keys) if index[k] in test_groups]
    train = [i for i, k in enumerate(keys) if index[k] not in test_groups]
    return train, test


@DATASETS.register(
    "gtsrb", "GTSRB traffic signs (Final_Training/Images/000NN/*.ppm), ROI-cropped, 43 classes"
)
def gtsrb(
    root: str | os.PathLike[str] | None = None,
    size: int = 32,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Splits:
    """GTSRB (Stallkamp et al. 2011), cropped to the CSV ROI and resized to ``size`` x ``size``.

    The test set is ``Final_Test/Images`` with ``GT-final_test.csv`` when present, else a seeded
    split of the training tracks (frames of one physical sign never straddle train and test).
    """
    if root is None:
        root = os.environ.get("BACKDOORLAB_GTSRB")
    if root is None:
        raise DataError("gtsrb: no folder given; pass --data-root DIR holding Final_Training/")
    base = _find_gtsrb(Path(root))
    _check_fraction(test_fraction)
    train_rows = _gtsrb_train_rows(base)
    test_rows = _gtsrb_test_rows(base)
    all_rows = train_rows + (test_rows or [])
    labels = [r.label if r.label is not None else -1 for r in all_rows]
    if min(labels) < 0:
        raise DataError(f"{base}: negative ClassId")
    k = max(len(GTSRB_CLASSES), max(labels) + 1)
    classes = GTSRB_CLASSES + [str(i) for i in range(len(GTSRB_CLASSES), k)]
    x = stack_images([r.path for r in all_rows], size, 3, [r.crop for r in all_rows])
    full = ImageData(x, torch.tensor(labels, dtype=torch.long), classes=classes, name="gtsrb")
    if test_rows is not None:
        n = len(train_rows)
        return Splits(train=full.subset(slice(0, n)), test=full.subset(slice(n, None)))
    tr, te = _track_split(train_rows, test_fraction, seed)
    return Splits(train=full.subset(tr), test=full.subset(te))
