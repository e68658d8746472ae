"""Deterministic simulators of cameras and generators for the built-in demo.

``make demo`` must show ganprint end to end on a machine with no data and no network, so the demo
makes its own data:

- ``natural_content`` and ``flat_field`` (``scene``) draw scenes: smooth gradients, random
  polygons and disks with soft edges, gratings and 1/f ("pink") textures, in colour, as float32
  in [0, 1];
- ``SimulatedCamera`` (``camera``) photographs a scene through a sensor with its own PRNU factor
  ``K`` (``I = quantize(gamma(Y (1 + K) + shot + read noise))``), optionally JPEG-compressed;
- ``SimulatedGenerator`` (``generator``) is a fixed, seeded, random up-sampling decoder
  (transposed convolution, nearest or bilinear up-sampling followed by a convolution, or pixel
  shuffle) that turns low-resolution scenes into colour images carrying the periodic traces real
  GANs leave.

Everything is a pure function of integer seeds through ``numpy.random.SeedSequence``
(``_common``): the same seed gives the same bytes on every machine, a different seed a different
camera, generator or image. Image ``i`` of a sequence depends only on ``(seed, i)``, never on how
many images were asked for. NumPy, SciPy and Pillow only.

Imports run one way: ``camera`` and ``generator`` use ``scene``; all three use ``_common``; this
package module only re-exports.
"""

from __future__ import annotations

from fingerprint.synthetic.camera import SimulatedCamera, make_camera
from fingerprint.synthetic.generator import ARCHITECTURES, SimulatedGenerator, make_generator
from fingerprint.synthetic.scene import flat_field, natural_content

__all__ = [
    "ARCHITECTURES",
    "SimulatedCamera",
    "SimulatedGenerator",
    "flat_field",
    "make_camera",
    "make_generator",
    "natural_content",
]
