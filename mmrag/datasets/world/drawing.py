"""Drawing scenes with PIL. Everything is drawn at twice the final size and halved, for smooth edges.

An entity's look is fixed by its signature: the category decides the layout (creatures have eyes and
legs, plants a crown on a stem with leaves, tools a head on a banded handle, vehicles a body on wheels),
the signature decides body shape, colours, fill pattern and how many legs/leaves/bands/wheels there are.
"""
from __future__ import annotations

from typing import Tuple

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from mmrag.datasets.world.entities import Entity
from mmrag.datasets.world.scenes import Scene, SceneObject
from mmrag.datasets.world.vocabulary import COLOURS

SCALE = 2  # supersampling factor
Region = Tuple[float, float, float, float]  # x, y, width, height on the supersampled canvas
_DARK = (35, 35, 35)


def _shape_mask(shape: str, w: int, h: int, pad: int) -> Image.Image:
    """A white-on-black mask of `shape` filling a w x h box, with `pad` empty pixels all round."""
    mask = Image.new("L", (w + 2 * pad, h + 2 * pad), 0)
    draw = ImageDraw.Draw(mask)
    x0, y0, x1, y1 = pad, pad, pad + w - 1, pad + h - 1
    mx, my = (x0 + x1) / 2, (y0 + y1) / 2
    if shape == "round":
        draw.ellipse((x0, y0, x1, y1), fill=255)
    elif shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=255)
    elif shape == "triangular":
        draw.polygon([(mx, y0), (x1, y1), (x0, y1)], fill=255)
    elif shape == "diamond":
        draw.polygon([(mx, y0), (x1, my), (mx, y1), (x0, my)], fill=255)
    elif shape == "hexagonal":
        qx = w / 4
        draw.polygon([(x0 + qx, y0), (x1 - qx, y0), (x1, my), (x1 - qx, y1), (x0 + qx, y1), (x0, my)], fill=255)
    elif shape == "arched":
        draw.pieslice((x0, y0, x1, y1 + h), 180, 360, fill=255)
    else:
        raise ValueError(f"unknown shape '{shape}'")
    return mask


def _pattern_fill(pattern: str, w: int, h: int, colour: Tuple[int, int, int],
                  accent: Tuple[int, int, int]) -> Image.Image:
    """A w x h tile of the main colour with the pattern drawn in the accent colour (about 4 repeats)."""
    tile = Image.new("RGB", (w, h), colour)
    draw = ImageDraw.Draw(tile)
    step = max(4, min(w, h) // 4)
    if pattern == "striped":  # stripes a third of the period wide, so the main colour stays dominant
        for y in range(step // 2, h, step):
            draw.rectangle((0, y, w, y + step // 3 - 1), fill=accent)
    elif pattern == "dotted":
        r = max(1, step // 4)
        for y in range(step // 2, h, step):
            for x in range(step // 2, w, step):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=accent)
    elif pattern == "checkered":
        for row, y in enumerate(range(0, h, step)):
            for col, x in enumerate(range(0, w, step)):
                if (row + col) % 2:  # inset squares: about a third of the area in the accent colour
                    inset = step // 6
                    draw.rectangle((x + inset, y + inset, x + step - 1 - inset, y + step - 1 - inset), fill=accent)
    elif pattern == "ringed":
        for i, inset in enumerate(range(step // 2, min(w, h) // 2, step // 2)):
            if i % 2 == 0:
                draw.ellipse((inset, inset, w - inset, h - inset), outline=accent, width=max(1, step // 4))
    elif pattern == "two-toned":
        draw.rectangle((w * 3 // 5, 0, w, h), fill=accent)
    elif pattern != "plain":
        raise ValueError(f"unknown pattern '{pattern}'")
    return tile


def _paint_body(canvas: Image.Image, region: Region, entity: Entity) -> None:
    """Fill `region` with the entity's shape and pattern, outlined in dark grey."""
    x, y, w, h = (int(round(v)) for v in region)
    w, h = max(w, 2), max(h, 2)
    pad = 2  # outline width on the supersampled canvas (1 pixel in the final image)
    sig = entity.signature
    mask = _shape_mask(sig.shape, w, h, pad)
    fill = _pattern_fill(sig.pattern, w + 2 * pad, h + 2 * pad, COLOURS[sig.colour], COLOURS[sig.accent])
    canvas.paste(fill, (x - pad, y - pad), mask)
    outline = ImageChops.subtract(mask.filter(ImageFilter.MaxFilter(2 * pad + 1)), mask)
    canvas.paste(_DARK, (x - pad, y - pad), outline)


def _draw_creature(canvas: Image.Image, draw: ImageDraw.ImageDraw, region: Region, entity: Entity) -> None:
    x, y, w, h = region
    legs = entity.signature.parts
    leg_w = max(3.0, min(w / 10, 0.35 * w / max(1, legs - 1)))  # half the leg spacing at most: gaps stay visible
    accent = COLOURS[entity.signature.accent]  # legs in the accent colour: visible even on plain bodies
    for i in range(legs):
        lx = x + w * (0.15 + 0.7 * i / max(1, legs - 1))
        draw.rectangle((lx - leg_w / 2, y + 0.65 * h, lx + leg_w / 2, y + h), fill=accent, outline=_DARK)
    _paint_body(canvas, (x, y, w, 0.78 * h), entity)
    for ex in (0.37, 0.63):
        cx, cy, r = x + ex * w, y + 0.42 * h, 0.09 * w
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 255, 255), outline=_DARK)
        draw.ellipse((cx - r / 2, cy - r / 2, cx + r / 2, cy + r / 2), fill=_DARK)


def _draw_plant(canvas: Image.Image, draw: ImageDraw.ImageDraw, region: Region, entity: Entity) -> None:
    x, y, w, h = region
    draw.rectangle((x + 0.44 * w, y + 0.5 * h, x + 0.56 * w, y + h), fill=(30, 105, 40))
    accent = COLOURS[entity.signature.accent]
    for i in range(entity.signature.parts):
        ly = y + h * (0.66 + 0.11 * i)
        side = -1 if i % 2 == 0 else 1
        lx0 = x + 0.5 * w + (0 if side > 0 else -0.34 * w)
        draw.ellipse((lx0, ly - 0.05 * h, lx0 + 0.34 * w, ly + 0.05 * h), fill=accent, outline=_DARK)
    _paint_body(canvas, (x, y, w, 0.6 * h), entity)


def _draw_tool(canvas: Image.Image, draw: ImageDraw.ImageDraw, region: Region, entity: Entity) -> None:
    x, y, w, h = region
    hx0, hx1 = x + 0.38 * w, x + 0.62 * w
    draw.rectangle((hx0, y + 0.45 * h, hx1, y + h), fill=(95, 62, 32), outline=_DARK)
    accent = COLOURS[entity.signature.accent]
    for i in range(entity.signature.parts):
        by = y + h * (0.62 + 0.12 * i)
        draw.rectangle((hx0, by, hx1, by + 0.05 * h), fill=accent)
    _paint_body(canvas, (x, y, w, 0.52 * h), entity)


def _draw_vehicle(canvas: Image.Image, draw: ImageDraw.ImageDraw, region: Region, entity: Entity) -> None:
    x, y, w, h = region
    _paint_body(canvas, (x, y, w, 0.72 * h), entity)
    wheels = entity.signature.parts
    r = min(0.15 * h, w / (2.4 * wheels))
    for i in range(wheels):
        cx = x + w * (0.18 + 0.64 * i / max(1, wheels - 1))
        cy = y + h - r
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_DARK)
        hub = r / 2  # hubs in the accent colour: visible even on plain bodies
        draw.ellipse((cx - hub, cy - hub, cx + hub, cy + hub), fill=COLOURS[entity.signature.accent])


def _draw_generic(draw: ImageDraw.ImageDraw, region: Region, word: str) -> None:
    x, y, w, h = region
    if word == "tree":
        draw.rectangle((x + 0.42 * w, y + 0.55 * h, x + 0.58 * w, y + h), fill=(110, 70, 35))
        draw.ellipse((x, y, x + w, y + 0.68 * h), fill=(40, 125, 50), outline=_DARK)
    elif word == "rock":
        pts = [(0.1, 0.55), (0.3, 0.15), (0.62, 0.1), (0.9, 0.4), (1.0, 0.95), (0.0, 0.95)]
        draw.polygon([(x + px * w, y + py * h) for px, py in pts], fill=(118, 112, 106), outline=_DARK)
    elif word == "ball":
        for start, colour in ((0, (220, 40, 40)), (120, (245, 215, 35)), (240, (40, 75, 220))):
            draw.pieslice((x, y, x + w, y + h), start, start + 120, fill=colour)
        draw.ellipse((x, y, x + w, y + h), outline=_DARK, width=2)
    elif word == "house":
        draw.rectangle((x + 0.1 * w, y + 0.45 * h, x + 0.9 * w, y + h), fill=(235, 215, 175), outline=_DARK)
        draw.polygon([(x, y + 0.47 * h), (x + w / 2, y), (x + w, y + 0.47 * h)], fill=(160, 50, 40), outline=_DARK)
        draw.rectangle((x + 0.42 * w, y + 0.7 * h, x + 0.58 * w, y + h), fill=(80, 50, 30))
    elif word == "cloud":
        for cx, cy, rx, ry in ((0.3, 0.6, 0.3, 0.3), (0.55, 0.4, 0.32, 0.35), (0.75, 0.62, 0.25, 0.28)):
            draw.ellipse((x + (cx - rx) * w, y + (cy - ry) * h, x + (cx + rx) * w, y + (cy + ry) * h),
                         fill=(252, 252, 252), outline=(150, 150, 160))
    elif word == "mushroom":
        draw.rectangle((x + 0.38 * w, y + 0.45 * h, x + 0.62 * w, y + h), fill=(240, 230, 205), outline=_DARK)
        draw.pieslice((x, y, x + w, y + 0.9 * h), 180, 360, fill=(200, 30, 30), outline=_DARK)
        for dx in (0.3, 0.55, 0.75):
            draw.ellipse((x + (dx - 0.06) * w, y + 0.2 * h, x + (dx + 0.06) * w, y + 0.32 * h), fill=(255, 255, 255))
    elif word == "cup":
        draw.ellipse((x + 0.6 * w, y + 0.3 * h, x + w, y + 0.7 * h), outline=_DARK, width=max(2, int(w / 12)))
        draw.polygon([(x, y + 0.15 * h), (x + 0.78 * w, y + 0.15 * h), (x + 0.65 * w, y + h), (x + 0.13 * w, y + h)],
                     fill=(230, 240, 250), outline=_DARK)
    else:
        raise ValueError(f"unknown generic object '{word}'")


def _draw_object(canvas: Image.Image, draw: ImageDraw.ImageDraw, obj: SceneObject) -> None:
    region = tuple(v * SCALE for v in obj.box)
    if obj.entity is None:
        _draw_generic(draw, region, obj.word)
        return
    painters = {"creature": _draw_creature, "plant": _draw_plant, "tool": _draw_tool, "vehicle": _draw_vehicle}
    painters[obj.entity.category](canvas, draw, region, obj.entity)


def draw_scene(scene: Scene, size: int) -> Image.Image:
    """The RGB image (size x size pixels) of `scene`: sky, ground, then the objects in order."""
    big = size * SCALE
    canvas = Image.new("RGB", (big, big), scene.sky)
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, int(scene.horizon * big), big, big), fill=scene.ground)
    for obj in scene.objects:
        _draw_object(canvas, draw, obj)
    return canvas.reduce(SCALE)
