"""Input images: checking image tensors, and reading MONAI data dicts into tensors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from augmentor.utils.io import class_id, file_digest

__all__ = ["check_distinct_files", "check_images", "load_data_dicts"]


def check_images(images: Any, in_shape: tuple[int, ...], name: str, min_count: int) -> torch.Tensor:
    """Check that ``images`` are ``N >= min_count`` images of ``in_shape``, finite floats in [0, 1].

    Args:
        images: ``(N, *in_shape)``, e.g. ``(N, C, H, W[, D])``.
        in_shape: the shape of one image the model expects.
        name: what the error messages call the images (e.g. ``"val_images"``).
        min_count: the fewest images accepted.

    Returns:
        ``images`` as float32.

    Raises:
        TypeError: not a tensor.
        ValueError: not floating point, wrong shape, too few images, NaN/Inf, or
            values outside [0, 1]; the message names the problem.
    """
    if not isinstance(images, torch.Tensor):
        shape = ", ".join(map(str, in_shape))
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, {shape}), got {type(images).__name__}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor scaled to [0, 1], got dtype {images.dtype}")
    if images.ndim != len(in_shape) + 1:
        raise ValueError(
            f"{name} must have {len(in_shape) + 1} dimensions (N, {', '.join(map(str, in_shape))}), "
            f"got shape {tuple(images.shape)}"
        )
    if tuple(images.shape[1:]) != in_shape:
        raise ValueError(f"{name} have shape {tuple(images.shape[1:])} per image but the model expects {in_shape}")
    if len(images) < min_count:
        raise ValueError(f"{name} must hold at least {min_count} images, got {len(images)}")
    bad = (~torch.isfinite(images)).sum().item()
    if bad:
        raise ValueError(f"{name} contain {bad} NaN or infinite value(s)")
    low, high = images.min().item(), images.max().item()
    if low < 0 or high > 1:
        raise ValueError(
            f"{name} must lie in [0, 1] (the decoder ends with a sigmoid), got values in [{low:.4g}, {high:.4g}]; "
            "rescale them first"
        )
    return images.float()


def load_data_dicts(data: Sequence[dict[str, Any]], transform: Callable | None, image_key: str = "image",
                    label_key: str = "label") -> tuple[torch.Tensor, torch.Tensor]:
    """Read MONAI data dicts (``{"image": path, "label": int}``) into tensors.

    Args:
        data: the data dicts; images are loaded by ``transform`` (e.g. a MONAI
            ``Compose`` of ``LoadImaged``, ``EnsureChannelFirstd``,
            ``ScaleIntensityd``, ``Resized``), which must yield equal-shaped
            channel-first images in [0, 1].
        transform: called on a shallow copy of each dict (the inputs are not modified).

    Returns:
        images ``(N, C, H, W[, D])`` float32 and labels ``(N,)`` int64.

    Raises:
        ValueError: an item is not such a dict, two items name one file (see
            :func:`check_distinct_files`), shapes differ after the transform, or a
            label is not an integer (``0.7`` is refused, not truncated).
        TypeError: a label is not a number (e.g. a class name).
    """
    check_distinct_files(data, image_key)
    images, labels = [], []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise ValueError(
                f"data item {i} must be a dict with keys {image_key!r} and {label_key!r}, got a {type(item).__name__}; "
                "pass images as one (N, C, H, W[, D]) tensor or array, or as a list of MONAI data dicts"
            )
        if image_key not in item or label_key not in item:
            raise ValueError(f"data item {i} must be a dict with keys {image_key!r} and {label_key!r}, got {item!r}")
        source = item[image_key]
        where = f"data item {i}" + (f" ({str(source)!r})" if isinstance(source, (str, Path)) else "")
        out = _read_item(item, transform, where)
        image = torch.as_tensor(out[image_key]).float()
        bad = int((~torch.isfinite(image)).sum())
        if bad:
            raise ValueError(f"{where} holds {bad} NaN or infinite value(s) after the transform; fix or drop "
                             "that image (no intensity scaling can place them in [0, 1])")
        images.append(image.as_subclass(torch.Tensor))  # drop MONAI metadata
        labels.append(class_id(out[label_key], f"{where} {label_key!r}"))
    if not images:
        raise ValueError("no data items given")
    _check_one_shape(images, data, image_key)
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)


def _read_item(item: dict[str, Any], transform: Callable | None, where: str) -> Any:
    """``transform`` of a shallow copy of ``item``; a file that cannot be read is named with the reader's reason."""
    if transform is None:
        return item
    try:
        return transform(dict(item))
    except MemoryError:
        raise ValueError(f"{where}: reading it needs more memory than there is (a damaged or huge header?)") from None
    except Exception as err:  # MONAI wraps every reader error in "applying transform ..."
        cause: BaseException = err
        while cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, MemoryError):
            raise ValueError(f"{where}: reading it needs more memory than there is (a damaged or huge header?)"
                             ) from err
        reason = str(cause).strip().splitlines()[0][:300] if str(cause).strip() else type(cause).__name__
        raise ValueError(f"{where} cannot be read: {type(cause).__name__}: {reason}") from err


def _check_one_shape(images: list[torch.Tensor], data: Sequence[Any], image_key: str) -> None:
    """All images of one shape; otherwise name the items that differ from the most common shape."""
    shapes = [tuple(image.shape) for image in images]
    common = max(set(shapes), key=shapes.count)
    odd = [i for i, shape in enumerate(shapes) if shape != common]
    if odd:
        named = ", ".join(f"data item {i} ({str(data[i][image_key])!r}) has shape {shapes[i]}" for i in odd[:5])
        more = f" and {len(odd) - 5} more" if len(odd) > 5 else ""
        raise ValueError(f"images differ in shape after the transform (most have {common}): {named}{more}; "
                         "add a Resized/SpatialPadd step (data.preprocessing.spatial_size)")


def check_distinct_files(data: Sequence[Any], image_key: str = "image") -> None:
    """Refuse data dicts whose images are one file, so that no image lands in two splits or under two labels.

    Two entries are the same file when their paths resolve to one file (``./a.nii``
    and ``a.nii``, symbolic links) or, among files of equal size (the only ones
    hashed, which keeps the check cheap), when their bytes are identical (a copy).
    Entries that are not paths (arrays, tensors) are not compared.

    Raises:
        ValueError: naming both entries.
    """
    def name(index: int, path: Path) -> str:
        return f"data item {index} ({str(data[index][image_key])!r}, label {data[index].get('label')!r})"

    by_path: dict[Path, int] = {}
    by_size: dict[int, list[tuple[int, Path]]] = {}
    for i, item in enumerate(data):
        source = item.get(image_key) if isinstance(item, dict) else None
        if not isinstance(source, (str, os.PathLike)) or not Path(source).is_file():
            continue  # not a file: the loader names the problem
        path = Path(source).resolve()
        first = by_path.setdefault(path, i)
        if first != i:
            raise ValueError(f"{name(i, path)} is the same file as {name(first, path)}: {path}; "
                             "each image may be listed once (it would land in two splits or under two labels)")
        by_size.setdefault(path.stat().st_size, []).append((i, path))
    for group in by_size.values():
        digests: dict[str, tuple[int, Path]] = {}
        for i, path in group if len(group) > 1 else ():
            first, first_path = digests.setdefault(file_digest(path), (i, path))
            if first != i:
                raise ValueError(f"{name(i, path)} has the same content as {name(first, first_path)} "
                                 f"({path} and {first_path}); each image may be listed once")
