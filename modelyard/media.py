"""Encoding figures, images and tables into the artifact files MLflow writes for them.

The files and run tags are laid out as MLflow lays them out, so MLflow's UI and loaders read
what Modelyard logs: step-indexed images under `images/` with the name MLflow's UI parses,
tables as pandas' "split" JSON listed in the `mlflow.loggedArtifacts` tag. matplotlib, plotly
and Pillow are imported only when the caller hands over one of their objects (which means the
caller has that library), so matplotlib and Pillow need not be dependencies of the SDK.
"""

from __future__ import annotations

import io
import json
import posixpath
import re
import sys
import uuid
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from modelyard.entities import SystemTag
from modelyard.errors import InvalidArgument

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

# -- figures -------------------------------------------------------------------------------------

# Formats plotly writes through kaleido; anything else is HTML (always available) or refused.
_PLOTLY_IMAGE_FORMATS = (".png", ".jpg", ".jpeg", ".webp", ".svg", ".pdf")


def _extension(artifact_file: str) -> str:
    return posixpath.splitext(artifact_file)[1].lower()


def figure_bytes(figure: Any, artifact_file: str, save_kwargs: dict[str, Any] | None) -> bytes:
    """The figure saved in the format `artifact_file`'s extension names (matplotlib's default,
    PNG, without one); `save_kwargs` go to savefig / write_html / write_image."""
    kwargs = dict(save_kwargs or {})
    ext = _extension(artifact_file)
    # Looked up in sys.modules: an object of either library means that library is loaded, and a
    # plotly user need not have matplotlib installed (nor the reverse).
    mpl_figure = sys.modules.get("matplotlib.figure")
    plotly_base = sys.modules.get("plotly.basedatatypes")
    if mpl_figure is not None and isinstance(figure, mpl_figure.Figure):
        if ext:
            kwargs.setdefault("format", ext[1:])
        buffer = io.BytesIO()
        figure.savefig(buffer, **kwargs)
        return buffer.getvalue()
    if plotly_base is not None and isinstance(figure, plotly_base.BaseFigure):
        if ext == ".html":
            # As MLflow: plotly.js from its CDN keeps each file small (the full bundle is ~4 MB).
            kwargs.setdefault("include_plotlyjs", "cdn")
            kwargs.setdefault("auto_open", False)
            text = io.StringIO()
            figure.write_html(text, **kwargs)
            return text.getvalue().encode()
        if ext in _PLOTLY_IMAGE_FORMATS:
            import importlib.util

            if importlib.util.find_spec("kaleido") is None:
                raise ImportError(
                    f"plotly needs the kaleido package to save a figure as {ext}; log it as "
                    "an .html file instead, or `pip install kaleido`"
                )
            kwargs.setdefault("format", ext[1:])
            buffer = io.BytesIO()
            figure.write_image(buffer, **kwargs)
            return buffer.getvalue()
        raise TypeError(
            f"a plotly figure cannot be saved as {ext or 'a file without an extension'!r}; "
            f"name the artifact file .html or one of {', '.join(_PLOTLY_IMAGE_FORMATS)}"
        )
    raise TypeError(
        f"unsupported figure object type {type(figure).__module__}.{type(figure).__qualname__}; "
        "pass a matplotlib.figure.Figure or a plotly.graph_objects.Figure (for another kind of "
        "image, use log_image or log_artifact)"
    )


# -- images --------------------------------------------------------------------------------------

# The longer side of the thumbnail MLflow's UI shows for a step-indexed image.
COMPRESSED_IMAGE_SIZE = 256
# What the `key` of a step-indexed image may hold, as MLflow allows it.
_IMAGE_KEY = re.compile(r"[a-zA-Z0-9_\-./ ]+")


def _pil() -> Any:
    try:
        import PIL.Image
    except ImportError:
        raise ImportError(
            "logging a numpy array as an image needs Pillow; `pip install pillow`"
        ) from None
    return PIL.Image


def _array_to_uint8(array: np.ndarray) -> np.ndarray:
    """MLflow's rules: integers must lie in 0..255; bools and floats in 0..1 are scaled to
    0..255 (truncating, as MLflow does, so both write the same pixels); floats outside 0..1 are
    min-max rescaled with a warning."""
    kind = array.dtype.kind
    if kind not in "biuf":
        raise TypeError(
            f"an image array must hold bools, integers or floats, not {array.dtype}; convert "
            "it, e.g. with array.astype(numpy.uint8) for values in 0..255"
        )
    if array.size == 0:
        raise ValueError(f"the image array is empty (shape {array.shape}); pass at least a pixel")
    if kind in "iu":
        low, high = array.min(), array.max()
        if low < 0 or high > 255:
            raise ValueError(
                f"integer pixel values must lie in 0..255, found {low}..{high}; scale or clip "
                "them first, or pass floats in 0..1"
            )
        return array.astype(np.uint8)
    if kind == "f":
        if not np.isfinite(array).all():
            raise ValueError(
                "the image array holds NaN or infinity; replace them (numpy.nan_to_num) first"
            )
        low, high = array.min(), array.max()
        if low < 0 or high > 1:
            warnings.warn(
                f"float pixel values should lie in 0..1, found {low}..{high}; rescaling them "
                "to 0..1 by their minimum and maximum",
                UserWarning,
                stacklevel=4,
            )
            span = high - low
            array = (array - low) / span if span else np.zeros_like(array)
    return (array * 255).astype(np.uint8)


def to_pil_image(image: Any) -> PILImage:
    """A PIL image as is, or a numpy array (H x W, or H x W x 1/3/4 channels: gray, RGB,
    RGBA) converted by MLflow's rules."""
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3):
            raise ValueError(
                f"an image array must be 2-D (H x W) or 3-D (H x W x C), not shape {image.shape}"
            )
        if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
            raise ValueError(
                f"an image array must have 1 (gray), 3 (RGB) or 4 (RGBA) channels, not "
                f"{image.shape[2]} (shape {image.shape}); select the channels to show"
            )
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]  # PIL takes gray images as H x W
        return _pil().fromarray(_array_to_uint8(image))
    pil_image = sys.modules.get("PIL.Image")
    if pil_image is not None and isinstance(image, pil_image.Image):
        return image
    raise TypeError(
        f"unsupported image object type {type(image).__module__}.{type(image).__qualname__}; "
        "pass a numpy.ndarray or a PIL.Image.Image (for a figure, use log_figure)"
    )


def image_bytes(image: PILImage, artifact_file: str) -> bytes:
    """The image encoded in the format `artifact_file`'s extension names, as PIL's save by
    file name does (so .png gives PNG, .jpg JPEG)."""
    ext = _extension(artifact_file)
    image_format = _pil().registered_extensions().get(ext)
    if image_format is None:
        raise ValueError(
            f"Pillow cannot write an image named {artifact_file!r}; end the file name with an "
            "image extension such as .png or .jpg"
        )
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def thumbnail(image: PILImage) -> PILImage:
    """The image scaled, keeping its aspect ratio, so its longer side is COMPRESSED_IMAGE_SIZE
    (smaller images are enlarged, as MLflow does: its UI lays out thumbnails of that size)."""
    width, height = image.size
    if width > height:
        size = (COMPRESSED_IMAGE_SIZE, int(height * COMPRESSED_IMAGE_SIZE / width))
    else:
        size = (int(width * COMPRESSED_IMAGE_SIZE / height), COMPRESSED_IMAGE_SIZE)
    return image.resize((max(1, size[0]), max(1, size[1])))


def step_image_paths(key: str, step: int, timestamp: int) -> tuple[str, str]:
    """The full-size PNG's and the WebP thumbnail's paths for a step-indexed image, named as
    MLflow's UI parses them: images/<key, / as ~>+step+<n>+timestamp+<ms>+<uuid>[+compressed]."""
    if not _IMAGE_KEY.fullmatch(key):
        raise ValueError(
            f"image key {key!r} may hold only letters, digits, '_', '-', '.', ' ' and '/'; "
            "rename it"
        )
    stem = f"images/{key.replace('/', '~')}+step+{step}+timestamp+{timestamp}+{uuid.uuid4()}"
    return f"{stem}.png", f"{stem}+compressed.webp"


# -- tables --------------------------------------------------------------------------------------

# Characters that would break the JSON in the loggedArtifacts tag or the filter that searches it.
_TABLE_FORBIDDEN = "\"',:[]{}"


def check_table_file(artifact_file: str, *, writing: bool) -> None:
    for char in _TABLE_FORBIDDEN:
        if char in artifact_file:
            raise ValueError(
                f"table file name {artifact_file!r} holds {char!r}, which table names may not "
                f"hold (none of {_TABLE_FORBIDDEN}); rename it"
            )
    if writing and not artifact_file.endswith(".json"):
        raise ValueError(
            f"a table is stored as JSON, so its file name must end in .json, not "
            f"{artifact_file!r}; rename it (e.g. 'results.json')"
        )


def to_frame(data: Any) -> pd.DataFrame:
    """A DataFrame as is, or a dict of columns (a dict of scalars is one row, as in MLflow)."""
    if isinstance(data, pd.DataFrame):
        return data
    if not isinstance(data, dict):
        raise InvalidArgument(
            f"a table must be a pandas.DataFrame or a dict of columns, not "
            f"{type(data).__qualname__}; convert it with pandas.DataFrame(...)",
            field="data",
        )
    try:
        return pd.DataFrame(data)
    except ValueError:  # only scalars ("If using all scalar values, you must pass an index")
        return pd.DataFrame([data])


def image_columns(frame: pd.DataFrame) -> list[str]:
    """The columns holding PIL images, which MLflow stores as files the table points to; a
    column mixing images with other values is refused, as MLflow refuses it."""
    pil_image = sys.modules.get("PIL.Image")
    if pil_image is None:
        return []  # no PIL object can exist in this process
    found = []
    for column in [c for c, dtype in frame.dtypes.items() if dtype.kind == "O"]:
        is_image = frame[column].map(lambda v: isinstance(v, pil_image.Image))
        if is_image.all() and len(is_image):
            found.append(column)
        elif is_image.any():
            raise ValueError(
                f"column {column!r} mixes images with other values; put the images in a column "
                "of their own"
            )
    return found


def table_image_paths(artifact_file: str) -> tuple[str, str]:
    """Where a table's image cell is stored, as MLflow stores it: a PNG and a WebP thumbnail
    under table_images/<table name without extension>/."""
    stem = posixpath.join("table_images", posixpath.splitext(artifact_file)[0], str(uuid.uuid4()))
    return f"{stem}.png", f"{stem}.webp"


def table_json(frame: pd.DataFrame) -> bytes:
    """The table as MLflow writes it: pandas' "split" orient, no index, ISO dates; floats
    with 15 significant digits, pandas' most (MLflow keeps its default, 10)."""
    try:
        text = frame.to_json(orient="split", index=False, date_format="iso", double_precision=15)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(
            f"the table cannot be stored as JSON ({exc}); convert its columns to numbers, "
            "strings, bools or dates first"
        ) from exc
    return text.encode()


def read_table(data: bytes) -> pd.DataFrame:
    # precise_float: pandas' default parser reads 0.3 as 0.30000000000000004.
    return pd.read_json(io.BytesIO(data), orient="split", precise_float=True)


def _tables(tag_value: str | None) -> list[Any]:
    try:
        entries = json.loads(tag_value) if tag_value else []
    except json.JSONDecodeError:
        return []
    return entries if isinstance(entries, list) else []


def tag_lists_table(tag_value: str | None, artifact_file: str) -> bool:
    return {"path": artifact_file, "type": "table"} in _tables(tag_value)


def tag_with_table(tag_value: str | None, artifact_file: str) -> str | None:
    """The loggedArtifacts tag with the table added, or None when it lists it already."""
    entries = _tables(tag_value)
    entry = {"path": artifact_file, "type": "table"}
    if entry in entries:
        return None
    # Non-ASCII kept as is, so the server-side LIKE in table_filter matches it.
    return json.dumps([*entries, entry], ensure_ascii=False)


def table_filter(artifact_file: str) -> str:
    """A search filter narrowing runs to those whose tag may list the table. LIKE's wildcards
    (and the backslash JSON escapes a backslash with) in the name match loosely, so callers
    confirm each run with tag_lists_table."""
    loose = re.sub(r"[%_\\]+", "%", artifact_file)
    pattern = f'%"path"%:%"{loose}",%"type"%:%"table"%'
    return f"tags.`{SystemTag.LOGGED_ARTIFACTS}` LIKE '{pattern}'"
