"""Colour jitter with the arithmetic of torchvision's ColorJitter on PIL images.

The reference draws one set of jitter parameters per sample and applies it to
every frame and scale of that sample, so drawing and applying are separate
here.  The four operations run in a random order, each one Pillow's own
enhancement (so results match torchvision to the last bit), and the hue shift
wraps around the uint8 hue channel exactly as torchvision does.
"""
from collections import namedtuple

import numpy as np
from PIL import Image, ImageEnhance

# Ranges used by the reference: factors in [0.8, 1.2], hue shift in [-0.1, 0.1].
BRIGHTNESS = (0.8, 1.2)
CONTRAST = (0.8, 1.2)
SATURATION = (0.8, 1.2)
HUE = (-0.1, 0.1)

JitterParams = namedtuple("JitterParams", "order brightness contrast saturation hue")


def draw_jitter(rng):
    """Random order of the four operations and their factors, from ``rng``."""
    return JitterParams(order=tuple(int(i) for i in rng.permutation(4)),
                        brightness=float(rng.uniform(*BRIGHTNESS)),
                        contrast=float(rng.uniform(*CONTRAST)),
                        saturation=float(rng.uniform(*SATURATION)),
                        hue=float(rng.uniform(*HUE)))


def adjust_hue(img, hue_factor):
    """Rotate the hue of an RGB image by ``hue_factor`` turns (|factor| <= 0.5)."""
    h, s, v = img.convert("HSV").split()
    # Truncate toward zero, then wrap into uint8, as torchvision does.
    shift = int(np.int32(hue_factor * 255)) % 256
    h = h.point(lambda x: (x + shift) % 256)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


def apply_jitter(img, params):
    """Apply ``params`` (a JitterParams) to an RGB PIL image."""
    for op in params.order:
        if op == 0:
            img = ImageEnhance.Brightness(img).enhance(params.brightness)
        elif op == 1:
            img = ImageEnhance.Contrast(img).enhance(params.contrast)
        elif op == 2:
            img = ImageEnhance.Color(img).enhance(params.saturation)
        else:
            img = adjust_hue(img, params.hue)
    return img
