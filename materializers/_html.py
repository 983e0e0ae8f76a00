"""Small helpers for the dashboard's HTML visualizations."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image

STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;color:#222}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
.strip{display:flex;gap:4px;align-items:flex-start;margin:2px 0 10px 0}.strip figure{margin:0;text-align:center;font-size:11px}
.strip img{display:block;height:72px;image-rendering:pixelated;border:1px solid #888}
h3{margin:18px 0 4px 0}.muted{color:#666;font-size:12px}
"""


def page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h2>{html.escape(title)}</h2>{body}</body></html>"
    )


def image_data_uri(frame: np.ndarray | Image.Image, max_height: int = 144) -> str:
    """A JPEG thumbnail at most ``max_height`` tall, as a data URI (JPEG: a tenth of
    PNG's encoding time for photographic frames)."""
    image = Image.fromarray(frame) if isinstance(frame, np.ndarray) else frame
    if image.height > max_height:
        image = image.reduce(-(-image.height // max_height))  # box filter, integer factor
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def frame_strip(image_uris: Sequence[str], labels: Sequence[str], tooltips: Sequence[str]) -> str:
    """Thumbnails (data URIs from :func:`image_data_uri`) side by side, each labelled."""
    figures = "".join(
        f"<figure title='{html.escape(tip)}'><img src='{uri}'>{html.escape(label)}</figure>"
        for uri, label, tip in zip(image_uris, labels, tooltips)
    )
    return f"<div class='strip'>{figures}</div>"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
