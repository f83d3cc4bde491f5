#!/usr/bin/env python3
"""Render a procedural street as KITTI raw drives: stereo images, velodyne scans, oxts, calibration and splits.

Why: the project needs a drive it may generate, ship and test on without the real KITTI download. Everything follows
the conventions the KITTI raw loaders and the velodyne ground-truth tools rely on (normalised intrinsics
fx = 0.58 W, fy = 1.92 H, centred principal point; 0.54 m stereo baseline; KITTI velodyne mounting), so training and
evaluating on it is geometrically consistent with training and evaluating on KITTI.

Written under <out>/<DATE>/: the date's calibration files (for the rendered image size, so generate_depth_map builds
ground truth at that size), drive 0001 (train/val frames) and drive 0002 (a different street, for the eigen-style
test split), each with image_02/03, velodyne_points, oxts and the exact rendered depth of both cameras in KITTI's
depth-benchmark format (proj_depth/groundtruth/image_0X, uint16 PNG, metres * 256, 0 = none); and
<out>/splits/{train,val,test}_files.txt.

Usage: python tools/make_synthetic_kitti.py --out DIR [--frames N] [--width W --height H] [--seed S] [--png]
"""
import argparse
import datetime
import functools
import itertools
import math
import multiprocessing
import os
import time

import numpy as np
from PIL import Image

DATE = "2000_01_01"
TRAIN_DRIVE, TEST_DRIVE = 1, 2
FX_NORM, FY_NORM = 0.58, 1.92
# Rectified camera centres along the cam-0 x axis (m), as on the KITTI rig: 2 is the left colour camera, 3 the right.
CAM_X = {0: 0.0, 1: 0.54, 2: -0.06, 3: 0.48}
CAM_HEIGHT = 1.65
VELO_TO_CAM_R = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])  # velo x fwd, y left, z up
VELO_TO_CAM_T = np.array([-0.004, -0.076, -0.272])  # velodyne 1.73 m above ground, 0.27 m behind cam 0
IMU_TO_VELO_T = np.array([-0.81, 0.32, -0.80])
BEAM_ELEVATIONS = np.radians(np.linspace(2.0, -24.8, 64))
LIDAR_AZIMUTHS = 1000  # 0.36 degree steps: ~64k points per scan
LIDAR_RANGE = 120.0
PNG_DEPTH_MAX = 255.0  # uint16 depth * 256, the KITTI depth-benchmark encoding; 0 = no depth (sky, too far)
FPS = 10
ORIGIN_LAT, ORIGIN_LON, ORIGIN_ALT = 49.0, 8.43, 115.0
EARTH_RADIUS = 6378137.0
ROAD_HALF = 6.5     # kerb-to-kerb half width (m): two lanes plus a parking strip each side
LANE_X = 1.9        # centre of the lane the rig drives in
DEFAULTS = dict(num_frames=120, width=621, height=188, seed=0, ext=".jpg")  # ~1 min on 2 idle cores

BOX, CYLINDER, SPHERE = 0, 1, 2
PAVEMENT, FACADE, HEDGE, TRUNK, CROWN, POLE, CAR_BODY, CAR_CABIN, WHEEL, CRATE = range(10)
GROUND, SKY = -2, -1  # pseudo primitive indices
# Velodyne reflectance per material (ground first), roughly like KITTI's intensities.
REFLECTANCE = {GROUND: 0.25, PAVEMENT: 0.3, FACADE: 0.35, HEDGE: 0.2, TRUNK: 0.25, CROWN: 0.15, POLE: 0.6,
               CAR_BODY: 0.55, CAR_CABIN: 0.1, WHEEL: 0.05, CRATE: 0.45}
SUN = (np.array([-0.45, 0.8, 0.4]) / np.linalg.norm([-0.45, 0.8, 0.4])).astype(np.float32)
HAZE = np.float32([0.78, 0.83, 0.88])


# ---------------------------------------------------------------- scene

class Scene:
    """Primitives in the world frame (x right, y up, z along the road), all described by an axis-aligned box:
    boxes are themselves, vertical cylinders and spheres are stored as their bounding boxes."""

    def __init__(self):
        self._items = []

    def add(self, kind, lo, hi, mat, color, param=(0.0, 0.0, 0.0, 0.0)):
        """param is per material: FACADE (window spacing, storey height, wall style), CAR_BODY (centre x),
        WHEEL (axle z, axle height)."""
        self._items.append((kind, lo, hi, mat, color, tuple(param) + (0.0,) * (4 - len(param))))

    def freeze(self, rng):
        kind, lo, hi, mat, color, param = zip(*self._items)
        self.kind = np.array(kind)
        self.lo, self.hi = np.array(lo, float), np.array(hi, float)
        self.mat = np.array(mat)
        self.color = np.array(color, float)
        self.param = np.array(param, float)
        self.offset = rng.uniform(0, 1000, len(kind))  # decorrelates the noise of look-alike objects
        corner_sel = np.array(list(itertools.product((0, 1), repeat=3)))
        self.corners = np.where(corner_sel[None], self.hi[:, None], self.lo[:, None])  # (P, 8, 3)
        self.centre = 0.5 * (self.lo + self.hi)
        self.radius = 0.5 * (self.hi[:, 0] - self.lo[:, 0])
        del self._items
        return self


def _jitter(rng, color, spread=0.08):
    return tuple(np.clip(np.array(color) * rng.uniform(1 - spread, 1 + spread, 3) * rng.uniform(0.85, 1.1), 0, 1))


FACADE_COLORS = [(0.62, 0.40, 0.30), (0.74, 0.67, 0.55), (0.56, 0.56, 0.53), (0.80, 0.75, 0.66),
                 (0.46, 0.36, 0.30), (0.60, 0.64, 0.67), (0.70, 0.55, 0.42)]
CAR_COLORS = [(0.72, 0.73, 0.75), (0.08, 0.08, 0.09), (0.85, 0.85, 0.83), (0.55, 0.08, 0.06),
              (0.10, 0.20, 0.45), (0.30, 0.32, 0.34), (0.60, 0.55, 0.40), (0.15, 0.35, 0.20)]


def _add_car(scene, rng, xc, z0, length):
    width = rng.uniform(1.65, 1.85)
    color = _jitter(rng, CAR_COLORS[rng.integers(len(CAR_COLORS))], 0.03)
    body_top = rng.uniform(0.9, 1.05)
    half = width / 2
    scene.add(BOX, (xc - half, 0.3, z0), (xc + half, body_top, z0 + length), CAR_BODY, color, (xc,))
    cab0, cab1 = z0 + length * rng.uniform(0.2, 0.32), z0 + length * rng.uniform(0.68, 0.78)
    scene.add(BOX, (xc - half + 0.08, body_top, cab0), (xc + half - 0.08, body_top + rng.uniform(0.4, 0.55), cab1),
              CAR_CABIN, color)
    for zw in (z0 + 0.8, z0 + length - 0.8):
        scene.add(BOX, (xc - half + 0.03, 0.0, zw - 0.32), (xc + half - 0.03, 0.64, zw + 0.32), WHEEL,
                  (0.06, 0.06, 0.065), (zw, 0.32))


def _add_tree(scene, rng, x, z, base):
    trunk_h = rng.uniform(2.2, 3.4)
    r = rng.uniform(0.12, 0.22)
    scene.add(CYLINDER, (x - r, base, z - r), (x + r, base + trunk_h, z + r), TRUNK, _jitter(rng, (0.32, 0.24, 0.17)))
    cr = rng.uniform(1.3, 2.4)
    cy = base + trunk_h + 0.6 * cr
    scene.add(SPHERE, (x - cr, cy - cr, z - cr), (x + cr, cy + cr, z + cr), CROWN,
              _jitter(rng, (0.20, 0.34, 0.12), 0.15))


def _street_side(scene, rng, side, z_min, z_max):
    """Pavement, buildings (two rows), hedges, trees, lamp posts, parked cars and crates on one side (-1 left,
    +1 right)."""
    pav_w = rng.uniform(2.5, 4.0)
    front = ROAD_HALF + pav_w
    xs = lambda a, b: (min(side * a, side * b), max(side * a, side * b))  # lateral span on this side
    x0, x1 = xs(ROAD_HALF, ROAD_HALF + 90)
    scene.add(BOX, (x0, -1.0, z_min), (x1, 0.15, z_max), PAVEMENT, _jitter(rng, (0.62, 0.60, 0.57)))

    z = z_min
    while z < z_max:
        width = rng.uniform(6, 20)
        if rng.random() < 0.15:  # open lot: a hedge with trees behind it
            a, b = xs(front, front + 0.8)
            scene.add(BOX, (a, 0.0, z), (b, rng.uniform(0.9, 1.6), z + width), HEDGE, _jitter(rng, (0.17, 0.30, 0.10)))
            for zt in np.arange(z + rng.uniform(1, 4), z + width, rng.uniform(4, 7)):
                _add_tree(scene, rng, side * (front + rng.uniform(3, 7)), zt, 0.15)
        else:
            setback = rng.uniform(0, 2.5)
            a, b = xs(front + setback, front + setback + rng.uniform(8, 16))
            param = (rng.uniform(2.2, 3.6), rng.uniform(2.8, 3.4), rng.integers(3), 0.0)
            scene.add(BOX, (a, 0.0, z), (b, rng.uniform(5, 22), z + width), FACADE,
                      _jitter(rng, FACADE_COLORS[rng.integers(len(FACADE_COLORS))]), param)
        z += width + (rng.uniform(2.5, 6) if rng.random() < 0.25 else 0.0)

    z = z_min
    while z < z_max:  # a taller back row, seen through alleys and open lots
        width = rng.uniform(15, 40)
        a, b = xs(front + 22 + rng.uniform(0, 6), front + 45)
        param = (rng.uniform(2.2, 3.6), rng.uniform(2.8, 3.4), rng.integers(3), 0.0)
        scene.add(BOX, (a, 0.0, z), (b, rng.uniform(12, 35), z + width), FACADE,
                  _jitter(rng, FACADE_COLORS[rng.integers(len(FACADE_COLORS))]), param)
        z += width + (rng.uniform(2, 8) if rng.random() < 0.3 else 0.0)

    for z in np.arange(z_min + rng.uniform(0, 20), z_max, rng.uniform(20, 32)):  # lamp posts at the kerb
        x, r = side * (ROAD_HALF + 0.5), 0.09
        scene.add(CYLINDER, (x - r, 0.15, z - r), (x + r, rng.uniform(6, 8), z + r), POLE, (0.42, 0.43, 0.45))
    for z in np.arange(z_min + rng.uniform(0, 10), z_max, rng.uniform(8, 16)):
        if rng.random() < 0.55:
            _add_tree(scene, rng, side * (ROAD_HALF + pav_w * rng.uniform(0.45, 0.7)), z + rng.uniform(-1, 1), 0.15)
        if rng.random() < 0.3:  # bin, cabinet or crate on the pavement
            x = side * (ROAD_HALF + rng.uniform(0.6, pav_w - 0.8))
            w, d, h = rng.uniform(0.5, 1.2), rng.uniform(0.5, 1.2), rng.uniform(0.6, 1.6)
            zc = z + rng.uniform(3, 6)
            scene.add(BOX, (x - w / 2, 0.15, zc - d / 2), (x + w / 2, 0.15 + h, zc + d / 2), CRATE,
                      _jitter(rng, CAR_COLORS[rng.integers(len(CAR_COLORS))], 0.15))

    z = z_min
    while z < z_max:  # parked cars along the kerb
        length = rng.uniform(3.8, 4.8)
        if rng.random() < 0.6:
            _add_car(scene, rng, side * (ROAD_HALF - 1.15 + rng.uniform(-0.1, 0.1)), z, length)
        z += length + rng.uniform(0.8, 3.0) + (rng.uniform(5, 15) if rng.random() < 0.2 else 0.0)


def build_scene(rng, z_min, z_max):
    """A straight street between z_min and z_max (m) with everything placed at random but reproducibly from rng."""
    scene = Scene()
    for side in (-1, 1):
        _street_side(scene, rng, side, z_min, z_max)
    z = z_min + rng.uniform(10, 40)
    while z < z_max:  # stopped cars in the opposite lane
        _add_car(scene, rng, -LANE_X + rng.uniform(-0.3, 0.3), z, rng.uniform(3.8, 4.8))
        z += rng.uniform(20, 60)
    return scene.freeze(rng)


# ---------------------------------------------------------------- rig path

def _wave(rng, t, amplitude, period_min, period_max, terms=3):
    """Smooth random signal (sum of sinusoids) and its derivative at t; |value| <= amplitude."""
    periods = rng.uniform(period_min, period_max, terms)
    phases = rng.uniform(0, 2 * np.pi, terms)
    weights = rng.uniform(0.5, 1.0, terms)
    weights *= amplitude / weights.sum()
    arg = 2 * np.pi * t[:, None] / periods + phases
    return (weights * np.sin(arg)).sum(1), (weights * 2 * np.pi / periods * np.cos(arg)).sum(1)


def _rot_x(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_z(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def make_path(rng, num_frames):
    """Cam-0 poses (N, 4, 4), camera -> world: forward along z at 0.5-1.5 m per frame, weaving gently in the lane,
    with small pitch, roll and height changes (what a car's suspension does)."""
    k = np.arange(num_frames, dtype=float)
    speed = np.clip(1.0 + _wave(rng, k, 0.4, 40, 150)[0], 0.5, 1.5)
    z = np.concatenate([[0.0], np.cumsum(speed[:-1])])
    lateral, slope = _wave(rng, z, 0.45, 60, 250)
    yaw = -np.arctan(slope) + _wave(rng, k, 0.004, 10, 40)[0]   # positive = turning left, as in oxts
    pitch = _wave(rng, k, 0.008, 15, 60)[0]                      # positive = nose down
    roll = _wave(rng, k, 0.004, 15, 60)[0]                       # positive = left side up
    height = CAM_HEIGHT + _wave(rng, k, 0.02, 8, 30)[0]
    cam_axes = np.diag([1.0, -1.0, 1.0])  # camera y points down, world y up
    poses = np.tile(np.eye(4), (num_frames, 1, 1))
    for i in range(num_frames):
        poses[i, :3, :3] = _rot_y(-yaw[i]) @ _rot_x(pitch[i]) @ _rot_z(-roll[i]) @ cam_axes
        poses[i, :3, 3] = (LANE_X + lateral[i], height[i], z[i])
    return poses


# ---------------------------------------------------------------- ray casting

_EDGES = np.array([(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1])


class Rays:
    """A (rows, cols) grid of rays from one origin, kept as separate direction components and their reciprocals so
    that a rectangle of rays is a cheap slice."""

    def __init__(self, origin, dirs):
        self.origin = origin
        self.d = [np.ascontiguousarray(dirs[..., k]) for k in range(3)]
        with np.errstate(divide="ignore"):
            self.inv = [1.0 / c for c in self.d]
        self.shape = dirs.shape[:2]


def camera_cull(scene, origin, rot, intr, width, height, far=300.0):
    """[(primitive, [(row0, row1, col0, col1)])] for the primitives in view: each bounding box is clipped against the
    near plane and its corners projected, so a primitive is only tested against the pixels it can cover."""
    fx, fy, cx, cy = intr
    near = 0.05
    pc = (scene.corners - origin) @ rot  # camera coordinates, (P, 8, 3)
    z = pc[..., 2]
    za, zb = z[:, _EDGES[:, 0]], z[:, _EDGES[:, 1]]
    crosses = (za > near) != (zb > near)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (near - za) / (zb - za)
        clipped = pc[:, _EDGES[:, 0]] + s[..., None] * (pc[:, _EDGES[:, 1]] - pc[:, _EDGES[:, 0]])
        pts = np.concatenate([pc, clipped], 1)
        valid = np.concatenate([z > near, crosses], 1)
        u = fx * pts[..., 0] / pts[..., 2] + cx
        v = fy * pts[..., 1] / pts[..., 2] + cy
    r0 = np.clip(np.floor(np.where(valid, v, np.inf).min(1)) - 1, 0, height).astype(int)
    r1 = np.clip(np.ceil(np.where(valid, v, -np.inf).max(1)) + 2, 0, height).astype(int)
    c0 = np.clip(np.floor(np.where(valid, u, np.inf).min(1)) - 1, 0, width).astype(int)
    c1 = np.clip(np.ceil(np.where(valid, u, -np.inf).max(1)) + 2, 0, width).astype(int)
    dist = np.linalg.norm(np.clip(origin, scene.lo, scene.hi) - origin, axis=1)
    visible = valid.any(1) & (dist <= far) & (r1 > r0) & (c1 > c0)
    return [(i, [(r0[i], r1[i], c0[i], c1[i])]) for i in np.nonzero(visible)[0]]


def lidar_cull(scene, origin, rot, far=LIDAR_RANGE):
    """Like camera_cull for the spinning scanner: rows are beams, columns are azimuth steps (wrapping around at the
    back)."""
    n_az = LIDAR_AZIMUTHS
    step = 2 * np.pi / n_az
    pc = (scene.corners - origin) @ rot  # velodyne coordinates, (P, 8, 3)
    az = np.arctan2(pc[..., 1], pc[..., 0])
    rel = (az - az[:, :1] + np.pi) % (2 * np.pi) - np.pi
    near_pt = np.clip(origin, scene.lo, scene.hi)
    dist = np.linalg.norm(near_pt - origin, axis=1)
    ground_dist = np.hypot(near_pt[:, 0] - origin[0], near_pt[:, 2] - origin[2])
    far_dist = np.linalg.norm(scene.corners - origin, axis=2).max(1)
    dy_lo, dy_hi = scene.lo[:, 1] - origin[1], scene.hi[:, 1] - origin[1]
    margin = np.radians(2.5)  # covers the rig's pitch and roll and the beam spacing
    el_hi = np.arctan2(dy_hi, np.where(dy_hi > 0, ground_dist, far_dist)) + margin
    el_lo = np.arctan2(dy_lo, np.where(dy_lo > 0, far_dist, ground_dist)) - margin
    descending = -BEAM_ELEVATIONS
    r0 = np.searchsorted(descending, -el_hi)
    r1 = np.searchsorted(descending, -el_lo, side="right")
    c0 = np.floor((az[:, 0] + rel.min(1) + np.pi) / step).astype(int) - 1
    c1 = np.ceil((az[:, 0] + rel.max(1) + np.pi) / step).astype(int) + 2
    around = (ground_dist < 1e-9) | (rel.max(1) - rel.min(1) > 0.9 * np.pi) | (c1 - c0 >= n_az)
    out = []
    for i in np.nonzero((dist <= far) & (r1 > r0))[0]:
        if around[i]:
            cols = [(0, n_az)]
        elif c0[i] < 0:
            cols = [(c0[i] + n_az, n_az), (0, c1[i])]
        elif c1[i] > n_az:
            cols = [(c0[i], n_az), (0, c1[i] - n_az)]
        else:
            cols = [(c0[i], c1[i])]
        out.append((i, [(r0[i], r1[i], a, b) for a, b in cols]))
    return out


@functools.lru_cache(maxsize=None)
def lidar_directions():
    """Unit beam directions in the velodyne frame, (64, LIDAR_AZIMUTHS, 3)."""
    az = -np.pi + 2 * np.pi * np.arange(LIDAR_AZIMUTHS) / LIDAR_AZIMUTHS
    el = BEAM_ELEVATIONS[:, None]
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el) * np.ones_like(az)], -1)


def _hit_box(rays, win, lo, hi):
    o = rays.origin
    ix, iy, iz = (c[win] for c in rays.inv)
    with np.errstate(invalid="ignore"):
        ax, bx = (lo[0] - o[0]) * ix, (hi[0] - o[0]) * ix
        ay, by = (lo[1] - o[1]) * iy, (hi[1] - o[1]) * iy
        az, bz = (lo[2] - o[2]) * iz, (hi[2] - o[2]) * iz
        t_in = np.fmax(np.fmax(np.fmin(ax, bx), np.fmin(ay, by)), np.fmin(az, bz))
        t_out = np.fmin(np.fmin(np.fmax(ax, bx), np.fmax(ay, by)), np.fmax(az, bz))
    return np.where((t_in <= t_out) & (t_in > 1e-6), t_in, np.inf)


def _hit_cylinder(rays, win, lo, hi):
    dx, dy, dz = (c[win] for c in rays.d)
    ox, oz = rays.origin[0] - 0.5 * (lo[0] + hi[0]), rays.origin[2] - 0.5 * (lo[2] + hi[2])
    r = 0.5 * (hi[0] - lo[0])
    a = dx * dx + dz * dz
    b = dx * ox + dz * oz
    disc = b * b - a * (ox * ox + oz * oz - r * r)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-b - np.sqrt(np.maximum(disc, 0))) / a
    y = rays.origin[1] + t * dy
    return np.where((disc > 0) & (t > 1e-6) & (y >= lo[1]) & (y <= hi[1]), t, np.inf)


def _hit_sphere(rays, win, lo, hi):
    dx, dy, dz = (c[win] for c in rays.d)
    ox, oy, oz = rays.origin - 0.5 * (lo + hi)
    r = 0.5 * (hi[0] - lo[0])
    a = dx * dx + dy * dy + dz * dz
    b = dx * ox + dy * oy + dz * oz
    disc = b * b - a * (ox * ox + oy * oy + oz * oz - r * r)
    t = (-b - np.sqrt(np.maximum(disc, 0))) / a
    return np.where((disc > 0) & (t > 1e-6), t, np.inf)


_HIT = {BOX: _hit_box, CYLINDER: _hit_cylinder, SPHERE: _hit_sphere}


def cast(scene, rays, visible):
    """Nearest hit of every ray: t (rows, cols), the hit being origin + t * direction (inf where nothing is hit),
    and the primitive index (GROUND for the ground plane y = 0, SKY for nothing)."""
    down = rays.d[1] < 0
    t = np.where(down, -rays.origin[1] * rays.inv[1], np.inf)
    prim = np.where(down, GROUND, SKY)
    for i, rects in visible:
        hit = _HIT[scene.kind[i]]
        for r0, r1, c0, c1 in rects:
            win = (slice(r0, r1), slice(c0, c1))
            ti = hit(rays, win, scene.lo[i], scene.hi[i])
            near = t[win]
            closer = ti < near
            near[closer] = ti[closer]
            prim[win][closer] = i
    return t, prim


def surface_normals(scene, p, prim):
    """Outward unit normals at hit points p of the given primitives, and the face axis (0, 1, 2 for faces normal to
    x, y, z; -1 on round surfaces)."""
    normal = np.zeros_like(p)
    axis = np.ones(len(p), int)
    safe = np.maximum(prim, 0)
    kind = np.where(prim == GROUND, -1, scene.kind[safe])
    normal[prim == GROUND, 1] = 1.0
    box = kind == BOX
    if box.any():
        q, k = p[box], safe[box]
        gaps = np.abs(np.concatenate([q - scene.lo[k], q - scene.hi[k]], 1))
        face = gaps.argmin(1)
        axis[box] = face % 3
        nb = np.zeros_like(q)
        nb[np.arange(len(q)), face % 3] = np.where(face >= 3, 1.0, -1.0)
        normal[box] = nb
    round_ = (kind == CYLINDER) | (kind == SPHERE)
    if round_.any():
        radial = p[round_] - scene.centre[safe[round_]]
        radial[kind[round_] == CYLINDER, 1] = 0.0
        normal[round_] = radial / np.linalg.norm(radial, axis=1, keepdims=True)
        axis[round_] = -1
    return normal, axis


# ---------------------------------------------------------------- textures

def _periodic_upsample(lattice, size):
    """Smoothly interpolate a periodic (n, n) lattice of values to (size, size)."""
    n = len(lattice)
    c = np.arange(size) * (n / size)
    i0 = np.floor(c).astype(int)
    f = c - i0
    f = f * f * (3 - 2 * f)
    i1 = (i0 + 1) % n
    rows = lattice[i0] * (1 - f)[:, None] + lattice[i1] * f[:, None]
    return rows[:, i0] * (1 - f) + rows[:, i1] * f


class Noise:
    """Seeded noise: a tileable fractal texture with mip levels, sampled at the level matching a pixel's footprint so
    that it fades instead of aliasing at a distance, and a table of random values per integer lattice cell."""

    SIZE = 256

    def __init__(self, rng):
        n = self.SIZE
        self.table = rng.random(n * n).astype(np.float32)
        image = np.zeros((n, n))
        amp = 1.0
        for k in range(7):  # lattices of 4 .. 256 cells across the tile
            image += amp * _periodic_upsample(rng.random((4 << k, 4 << k)), n)
            amp *= 0.62
        levels = [((image - image.mean()) / (4 * image.std())).astype(np.float32)]
        while len(levels[-1]) > 1:
            a = levels[-1]
            levels.append(0.25 * (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]))
        self.texels = np.concatenate([a.ravel() for a in levels])
        self.offsets = np.cumsum([0] + [a.size for a in levels[:-1]])
        self.top = len(levels) - 1

    def cell(self, ix, iy):
        """A random number in [0, 1) per integer cell (ix, iy)."""
        return self.table[((ix & 255) << 8) | (iy & 255)]

    def __call__(self, x, y, fp, scale):
        """Fractal noise (zero mean, std 0.25) at `scale` texels per metre, i.e. features from 2 to 64 texels,
        repeating every 256 texels, box-filtered over a pixel footprint of fp metres."""
        level = np.clip(np.round(np.log2(np.maximum(fp * scale, 1e-3))), 0, self.top).astype(np.int64)
        size = self.SIZE >> level
        k = scale / (1 << level)
        tx, ty = x * k - 0.5, y * k - 0.5
        x0, y0 = np.floor(tx), np.floor(ty)
        fx, fy = tx - x0, ty - y0
        mask = size - 1
        ix0, iy0 = x0.astype(np.int64) & mask, y0.astype(np.int64) & mask
        ix1, iy1 = (ix0 + 1) & mask, (iy0 + 1) & mask
        row0, row1 = self.offsets[level] + iy0 * size, self.offsets[level] + iy1 * size
        tex = self.texels
        top = tex[row0 + ix0] + (tex[row0 + ix1] - tex[row0 + ix0]) * fx
        bottom = tex[row1 + ix0] + (tex[row1 + ix1] - tex[row1 + ix0]) * fx
        return top + (bottom - top) * fy


def lines(c, period, width, fp):
    """Coverage (0..1) of `width`-wide lines every `period` metres along c, box-filtered over the footprint fp."""
    d = np.abs(c - period * np.round(c / period))
    sharp = np.clip((0.5 * width - d) / fp + 0.5, 0, 1)
    k = np.clip(2 * fp / period - 0.5, 0, 1)  # many lines per pixel: their mean cover
    return sharp + (width / period - sharp) * k


def span(c, a, b, fp):
    """Coverage of the interval [a, b] along c, antialiased over the footprint fp."""
    return np.clip((c - a) / fp + 0.5, 0, 1) * np.clip((b - c) / fp + 0.5, 0, 1)


def _mix(a, b, w):
    return a + (np.asarray(b, np.float32) - a) * w[:, None]


def _grey(x):
    return np.repeat(x[:, None], 3, 1)


class Hits:
    """Surface samples of one material: world point p, face axis, primitive index, footprint fp (m), the primitive's
    colour, and surface coordinates in metres: `along` runs across a face (or around a round surface), v is the
    height on vertical faces (z on horizontal ones), and u = along + a per-primitive offset feeds the noise."""

    def __init__(self, scene, p, axis, prim, fp):
        self.p, self.axis, self.prim, self.fp = p, axis, prim, fp
        safe = np.maximum(prim, 0)
        self.along = np.where(axis == 0, p[:, 2], p[:, 0])
        round_ = axis < 0
        if round_.any():
            c = scene.centre[safe[round_]]
            angle = np.arctan2(p[round_, 2] - c[:, 2], p[round_, 0] - c[:, 0])
            self.along[round_] = angle * scene.radius[safe[round_]]
        self.v = np.where(axis == 1, p[:, 2], p[:, 1])
        self.u = self.along + np.where(prim >= 0, scene.offset[safe], 0.0).astype(np.float32)
        self.color = scene.color[safe].astype(np.float32)


def _ground(nz, scene, s):
    x, z, fp = s.p[:, 0], s.p[:, 2], s.fp
    grain = nz(x, z, fp, 40.0)
    patches = nz(0.95 * x + 0.31 * z, 0.95 * z - 0.31 * x, fp, 2.5)
    asphalt = _grey(0.30 * (1 + 1.4 * grain + 0.4 * patches)) * np.float32([0.96, 0.98, 1.0])
    centre = span(x, -0.07, 0.07, fp) * span(z % 9.0, 0.0, 3.0, fp)  # dashed centre line
    parking = span(np.abs(x), ROAD_HALF - 2.25, ROAD_HALF - 2.15, fp) * span(z % 6.0, 0.0, 5.5, fp)
    edge = span(np.abs(x), ROAD_HALF - 0.4, ROAD_HALF - 0.28, fp)
    paint = np.clip(centre + parking + edge, 0, 1) * np.clip(0.9 + 2 * grain, 0, 1)
    road = _mix(asphalt, [0.85, 0.85, 0.82], paint)
    return np.where((np.abs(x) < ROAD_HALF)[:, None], road, road * np.float32([0.9, 1.2, 0.6]))


def _pavement(nz, scene, s):
    x, z, fp = s.p[:, 0], s.p[:, 2], s.fp
    tile = 0.5
    tile_shade = 0.15 * (nz.cell(np.floor(x / tile).astype(np.int64), np.floor(z / tile).astype(np.int64)) - 0.5)
    grout = np.maximum(lines(x, tile, 0.025, fp), lines(z, tile, 0.025, fp))
    kerb = np.abs(x) < ROAD_HALF + 0.25
    flat = (s.axis == 1) & ~kerb
    shade = 1 + np.where(flat, tile_shade * np.clip(1.2 - 4 * fp, 0, 1) - 0.35 * grout, 0.1) + \
        1.2 * nz(s.u, s.v, fp, 30.0)
    return s.color * shade[:, None]


def _facade(nz, scene, s):
    v, fp, prim = s.v, s.fp, s.prim
    spacing, storey, style = (scene.param[prim, k].astype(np.float32) for k in range(3))
    lo, hi = scene.lo[prim], scene.hi[prim]
    u0 = np.where(s.axis == 0, lo[:, 2], lo[:, 0]).astype(np.float32)
    width = np.where(s.axis == 0, hi[:, 2] - lo[:, 2], hi[:, 0] - lo[:, 0]).astype(np.float32)
    top = hi[:, 1].astype(np.float32)
    un = s.along - u0  # metres across the face from its edge
    stains = nz(s.u, v, fp, 6.0)
    detail = nz(s.u, v, fp, 40.0)
    brick_h, brick_w = 0.1, 0.3  # bricks (style 0), plaster (1) or large panels (2)
    row = np.floor(v / brick_h)
    ub = un + 0.5 * brick_w * (row % 2)
    brick = 0.3 * (nz.cell(np.floor(ub / brick_w).astype(np.int64) + 97 * prim, row.astype(np.int64)) - 0.5)
    bricks = brick * np.clip(1.2 - 6 * fp, 0, 1) - 0.3 * np.maximum(lines(v, brick_h, 0.015, fp),
                                                                    lines(ub, brick_w, 0.015, fp))
    panels = -0.4 * np.maximum(lines(un, 1.5, 0.03, fp), lines(v, 0.5 * storey, 0.03, fp))
    pattern = np.select([style == 0, style == 1], [bricks + 0.4 * detail, 1.2 * detail], panels + 0.5 * detail)
    wall = s.color * (1 + 0.5 * stains + pattern)[:, None]
    plinth = span(v, -1.0, 0.6, fp) + 0.5 * lines(v - 0.5, storey, 0.15, fp) * (v > 1)
    wall = _mix(wall, wall * 0.7, plinth)
    # windows: a grid of spacing x storey cells, keeping clear of the face's edges and the roof
    cu, cv = un % spacing, v % storey
    inside = span(un, 0.6, width - 0.6, fp) * span(v, storey * 0.3, top - 0.8, fp)
    glass_cov = span(cu, 0.27 * spacing, 0.73 * spacing, fp) * span(cv, 0.3 * storey, 0.78 * storey, fp)
    frame_cov = span(cu, 0.27 * spacing - 0.08, 0.73 * spacing + 0.08, fp) * \
        span(cv, 0.3 * storey - 0.08, 0.78 * storey + 0.08, fp)
    far = np.clip(2 * fp / np.minimum(spacing, storey) - 0.5, 0, 1)  # many windows per pixel: their mean cover
    glass_cov = glass_cov + (0.46 * 0.48 - glass_cov) * far
    frame_cov = frame_cov + (0.62 * 0.64 - frame_cov) * far
    lit = nz.cell(np.floor(un / spacing).astype(np.int64) + 31 * prim, np.floor(v / storey).astype(np.int64))
    glass = np.float32([0.09, 0.11, 0.14]) + (0.3 * lit ** 3)[:, None] * np.float32([1.0, 0.9, 0.7]) + \
        (0.12 * cv / storey + 0.2 * detail)[:, None]
    col = _mix(wall, [0.78, 0.77, 0.74], frame_cov * inside)
    col = _mix(col, glass, glass_cov * inside)
    roof = _grey(0.35 * (1 + 1.5 * stains + detail))
    return np.where((s.axis == 1)[:, None], roof, col)


def _foliage(nz, scene, s):
    leaves = nz(s.u, s.v, s.fp, 12.0) + nz(s.v, s.u, s.fp, 50.0)
    return s.color * np.clip(1 + 2.2 * leaves, 0.2, 2.0)[:, None]


def _trunk(nz, scene, s):
    return s.color * (1 + 1.5 * nz(s.u * 4, s.v * 0.5, s.fp * 4, 10.0))[:, None]


def _pole(nz, scene, s):
    band = lines(s.v, 2.2, 0.12, s.fp)
    return s.color * (1 + nz(s.u, s.v, s.fp, 40.0) - 0.5 * band)[:, None]


def _car_body(nz, scene, s):
    prim, fp, y = s.prim, s.fp, s.p[:, 1]
    lo, hi = scene.lo[prim].astype(np.float32), scene.hi[prim].astype(np.float32)
    col = s.color * (1 + 0.5 * nz(s.u, s.v, fp, 30.0))[:, None]
    x_rel = np.abs(s.p[:, 0] - scene.param[prim, 0])
    half = 0.5 * (hi[:, 0] - lo[:, 0])
    end = s.axis == 2
    lamp = end & (x_rel > half - 0.35) & (y > 0.62) & (y < 0.8)
    plate = end & (x_rel < 0.26) & (y > 0.4) & (y < 0.52)
    zr = (s.p[:, 2] - lo[:, 2]) / (hi[:, 2] - lo[:, 2])
    seams = (s.axis == 0) * np.maximum(lines(zr - 0.45, 1.0, 0.006, fp), lines(zr - 0.7, 1.0, 0.006, fp))
    col = _mix(col, col * 0.3, seams)
    front = (s.p[:, 2] > scene.centre[prim, 2])[:, None]
    col = np.where(lamp[:, None], np.where(front, np.float32([0.85, 0.8, 0.65]), np.float32([0.6, 0.05, 0.04])), col)
    col = np.where(plate[:, None], _grey(0.85 - 0.6 * (nz.cell((s.u * 12).astype(np.int64), (y * 20).astype(
        np.int64)) > 0.6)), col)
    bumper = span(y, -1.0, 0.45, fp) * (s.axis != 1)
    return _mix(col, _grey(0.12 + 0.3 * nz(s.u, s.v, fp, 40.0)), bumper)


def _car_cabin(nz, scene, s):
    prim, fp, y = s.prim, s.fp, s.p[:, 1]
    lo, hi = scene.lo[prim].astype(np.float32), scene.hi[prim].astype(np.float32)
    along = np.where(s.axis == 0, s.p[:, 2] - lo[:, 2], s.p[:, 0] - lo[:, 0])
    length = np.where(s.axis == 0, hi[:, 2] - lo[:, 2], hi[:, 0] - lo[:, 0])
    pane = span(along, 0.08, length - 0.08, fp) * span(y, lo[:, 1] + 0.06, hi[:, 1] - 0.06, fp)
    pane = pane * (1 - lines(along - 0.5 * length, length, 0.1, fp)) * (s.axis != 1)  # pillar between doors
    grain = nz(s.u, s.v, fp, 15.0)
    reflection = 0.1 + 0.25 * (y - lo[:, 1]) / (hi[:, 1] - lo[:, 1]) + 0.3 * grain
    body = s.color * (1 + 0.4 * grain)[:, None]
    return _mix(body, _grey(reflection) * np.float32([0.8, 0.9, 1.0]), pane)


def _wheel(nz, scene, s):
    prim = s.prim
    r = np.hypot(s.p[:, 2] - scene.param[prim, 0], s.p[:, 1] - scene.param[prim, 1]).astype(np.float32)
    hub = span(r, -1.0, 0.18, s.fp) * (s.axis == 0)
    tyre = _grey(0.06 * (1 + 2 * nz(s.u, s.v, s.fp, 40.0)))
    return _mix(tyre, [0.45, 0.45, 0.47], hub)


def _crate(nz, scene, s):
    band = lines(s.v, 0.5, 0.06, s.fp)
    return s.color * (1 + 1.2 * nz(s.u, s.v, s.fp, 30.0) - 0.4 * band)[:, None]


_MATERIALS = {GROUND: _ground, PAVEMENT: _pavement, FACADE: _facade, HEDGE: _foliage, CROWN: _foliage,
              TRUNK: _trunk, POLE: _pole, CAR_BODY: _car_body, CAR_CABIN: _car_cabin, WHEEL: _wheel, CRATE: _crate}


def sky_color(nz, d, focal):
    """Blue gradient with clouds drawn on a plane 1 km up (coordinates in km)."""
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    up = np.clip(d[:, 1], 0.02, 1)
    base = _mix(np.tile(HAZE, (len(d), 1)).astype(np.float32), [0.32, 0.52, 0.84], np.sqrt(up))
    cloud = np.clip(4 * nz(d[:, 0] / up, d[:, 2] / up, 1.0 / (focal * up * up), 30.0), 0, 1)
    return _mix(base, [0.95, 0.95, 0.97], cloud * np.clip(up * 6, 0, 1))


def shade(scene, nz, rays, t, prim, focal):
    """RGB (rows, cols, 3) in 0..1: textured albedo x (sun + sky light) with distance haze, and sky where nothing is
    hit."""
    dirs = np.stack([c.ravel() for c in rays.d], 1).astype(np.float32)
    t, prim, origin = t.ravel().astype(np.float32), prim.ravel(), rays.origin.astype(np.float32)
    col = np.empty((len(t), 3), np.float32)
    sky = prim == SKY
    col[sky] = sky_color(nz, dirs[sky], focal)
    mats = np.where(prim == GROUND, GROUND, scene.mat[np.maximum(prim, 0)])
    mats[sky] = SKY
    codes = np.arange(GROUND, len(_MATERIALS) - 1)  # ground, sky, then the materials 0..9
    order = np.argsort(mats, kind="stable")
    for m, idx in zip(codes, np.split(order, np.searchsorted(mats[order], codes[1:]))):
        if m == SKY or len(idx) == 0:
            continue
        d = dirs[idx]
        p = origin + t[idx, None] * d
        normal, axis = surface_normals(scene, p, prim[idx])
        length = np.linalg.norm(d, axis=1)
        dist = t[idx] * length
        cos = np.abs((normal * d).sum(1)) / length
        fp = dist / focal / np.sqrt(np.maximum(cos, 0.05))
        albedo = _MATERIALS[m](nz, scene, Hits(scene, p, axis, prim[idx], fp))
        light = 0.55 + 0.6 * np.clip(normal @ SUN, 0, 1) + 0.1 * normal[:, 1]
        light *= np.where(np.abs(normal[:, 1]) < 0.5, 0.8 + 0.2 * np.clip(p[:, 1], 0, 1), 1.0)  # wall meets ground
        haze = np.exp(-dist / 700.0)[:, None]
        col[idx] = albedo * (light[:, None] * haze) + HAZE * (1 - haze)
    return col.reshape(rays.shape + (3,))


def lidar_reflectance(scene, nz, p, prim):
    """Per-hit intensity in 0..1: a per-material level varying a little from place to place."""
    table = np.zeros(len(_MATERIALS) + 1)
    for m, r in REFLECTANCE.items():
        table[m + 2] = r
    mats = np.where(prim == GROUND, GROUND, scene.mat[np.maximum(prim, 0)])
    cells = nz.cell(np.floor(p[:, 0] * 4 + p[:, 1] * 4).astype(np.int64), np.floor(p[:, 2] * 4).astype(np.int64))
    return np.clip(table[mats + 2] + 0.15 * (cells - 0.5), 0, 1)


# ---------------------------------------------------------------- frames

def intrinsics(width, height):
    """fx, fy, cx, cy in pixels: the loaders' normalised K scaled to the image size."""
    return FX_NORM * width, FY_NORM * height, 0.5 * width, 0.5 * height


@functools.lru_cache(maxsize=None)
def camera_directions(width, height):
    """Ray directions through the pixel centres in the camera frame, (height, width, 3), with unit z so that the
    distance t along a ray is the depth. Pixel (row, col) looks through image point (col, row), the convention of
    the loaders' K (and of the training code's back-projection)."""
    fx, fy, cx, cy = intrinsics(width, height)
    u, v = np.meshgrid(np.arange(width, dtype=float), np.arange(height, dtype=float))
    return np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], -1)


class Drive:
    """What rendering a frame of one drive needs (pickled once into each worker process)."""

    def __init__(self, path, scene, noise, poses, width, height, ext):
        self.path, self.scene, self.noise, self.poses = path, scene, noise, poses
        self.width, self.height, self.ext = width, height, ext


def render_frame(drive, i):
    """Render frame i: both colour cameras with their depth maps, and the velodyne scan; write them to disk."""
    scene, nz, w, h = drive.scene, drive.noise, drive.width, drive.height
    intr = intrinsics(w, h)
    rot, centre = drive.poses[i, :3, :3], drive.poses[i, :3, 3]
    dirs = camera_directions(w, h) @ rot.T
    name = "{:010d}".format(i)
    for cam in (2, 3):
        rays = Rays(centre + rot[:, 0] * CAM_X[cam], dirs)
        t, prim = cast(scene, rays, camera_cull(scene, rays.origin, rot, intr, w, h))
        rgb = shade(scene, nz, rays, t, prim, intr[0])
        image = Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8))
        image_path = os.path.join(drive.path, "image_0{}".format(cam), "data", name + drive.ext)
        if drive.ext == ".jpg":
            image.save(image_path, quality=92)
        else:
            image.save(image_path)
        depth = np.where(t <= PNG_DEPTH_MAX, np.round(t * 256), 0).astype(np.uint16)
        Image.fromarray(depth).save(os.path.join(drive.path, "proj_depth", "groundtruth", "image_0{}".format(cam),
                                                 name + ".png"))
    velo_rot = rot @ VELO_TO_CAM_R
    beams = lidar_directions()
    rays = Rays(centre + rot @ VELO_TO_CAM_T, beams @ velo_rot.T)
    t, prim = cast(scene, rays, lidar_cull(scene, rays.origin, velo_rot))
    t, prim = t.ravel(), prim.ravel()
    keep = t <= LIDAR_RANGE
    points = beams.reshape(-1, 3)[keep] * t[keep, None]
    world = rays.origin + points @ velo_rot.T
    scan = np.hstack([points, lidar_reflectance(scene, nz, world, prim[keep])[:, None]]).astype(np.float32)
    scan.tofile(os.path.join(drive.path, "velodyne_points", "data", name + ".bin"))


_WORKER_DRIVE = None


def _init_worker(drive):
    global _WORKER_DRIVE
    _WORKER_DRIVE = drive


def _render_in_worker(i):
    render_frame(_WORKER_DRIVE, i)
    return i


# ---------------------------------------------------------------- text files

def _fmt(values):
    return " ".join(format(float(v) + 0.0, ".6e") for v in np.ravel(values))


def calibration_texts(width, height):
    """The three per-date calibration files in KITTI's text format, for images of width x height."""
    fx, fy, cx, cy = intrinsics(width, height)
    k = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    cam = ["calib_time: 01-Jan-2000 12:00:00", "corner_dist: " + _fmt([0.0995])]
    for c in range(4):
        proj = np.hstack([k, [[-fx * CAM_X[c]], [0.0], [0.0]]])
        cam += ["S_0{}: {}".format(c, _fmt([width, height])), "K_0{}: {}".format(c, _fmt(k)),
                "D_0{}: {}".format(c, _fmt(np.zeros(5))), "R_0{}: {}".format(c, _fmt(np.eye(3))),
                "T_0{}: {}".format(c, _fmt([-CAM_X[c], 0, 0])), "S_rect_0{}: {}".format(c, _fmt([width, height])),
                "R_rect_0{}: {}".format(c, _fmt(np.eye(3))), "P_rect_0{}: {}".format(c, _fmt(proj))]
    velo = ["calib_time: 01-Jan-2000 12:00:00", "R: " + _fmt(VELO_TO_CAM_R), "T: " + _fmt(VELO_TO_CAM_T),
            "delta_f: " + _fmt([0, 0]), "delta_c: " + _fmt([0, 0])]
    imu = ["calib_time: 01-Jan-2000 12:00:00", "R: " + _fmt(np.eye(3)), "T: " + _fmt(IMU_TO_VELO_T)]
    return {"calib_cam_to_cam.txt": cam, "calib_velo_to_cam.txt": velo, "calib_imu_to_velo.txt": imu}


def _rigid(rot, trans):
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = rot, trans
    return out


def oxts_lines(poses):
    """One KITTI oxts record (30 values) per frame, for the IMU pose implied by the cam-0 poses and calibration.
    The local east/north/up frame has east along the street (world z), north to its left (-x), up = world y."""
    cam_from_imu = _rigid(VELO_TO_CAM_R, VELO_TO_CAM_T) @ _rigid(np.eye(3), IMU_TO_VELO_T)
    imu = poses @ cam_from_imu  # imu -> world
    to_enu = np.array([[0.0, 0, 1], [-1, 0, 0], [0, 1, 0]])
    rot = to_enu @ imu[:, :3, :3]
    pos = imu[:, :3, 3] @ to_enu.T
    roll = np.arctan2(rot[:, 2, 1], rot[:, 2, 2])
    pitch = -np.arcsin(np.clip(rot[:, 2, 0], -1, 1))
    yaw = np.arctan2(rot[:, 1, 0], rot[:, 0, 0])
    scale = math.cos(math.radians(ORIGIN_LAT))
    mx = scale * ORIGIN_LON * math.pi * EARTH_RADIUS / 180 + pos[:, 0]
    my = scale * EARTH_RADIUS * math.log(math.tan(math.radians(90 + ORIGIN_LAT) / 2)) + pos[:, 1]
    lon = mx * 180 / (math.pi * EARTH_RADIUS * scale)
    lat = 360 / math.pi * np.arctan(np.exp(my / (EARTH_RADIUS * scale))) - 90
    alt = ORIGIN_ALT + pos[:, 2]
    n = len(poses)
    vel, acc, rate = np.zeros_like(pos), np.zeros_like(pos), np.zeros_like(pos)
    if n > 1:  # finite differences; the last angular rate repeats the one before
        vel = np.gradient(pos, axis=0) * FPS
        acc = np.gradient(vel, axis=0) * FPS
        step = np.einsum("nji,njk->nik", rot[:-1], rot[1:])
        rate[:-1] = 0.5 * FPS * np.stack([step[:, 2, 1] - step[:, 1, 2], step[:, 0, 2] - step[:, 2, 0],
                                          step[:, 1, 0] - step[:, 0, 1]], 1)
        rate[-1] = rate[-2]
    vel_body = np.einsum("nji,nj->ni", rot, vel)
    acc_body = np.einsum("nji,nj->ni", rot, acc + [0, 0, 9.81])  # an accelerometer also feels gravity
    lines = []
    for i in range(n):
        floats = [lat[i], lon[i], alt[i], roll[i], pitch[i], yaw[i], vel[i, 1], vel[i, 0], *vel_body[i],
                  *acc_body[i], *acc_body[i], *rate[i], *rate[i], 0.05, 0.02]
        lines.append(" ".join(format(float(v) + 0.0, ".14g") for v in floats) + " 4 10 6 6 6")
    return lines


OXTS_FORMAT = """lat:   latitude of the oxts unit (deg)
lon:   longitude of the oxts unit (deg)
alt:   altitude of the oxts unit (m)
roll:  roll angle (rad), 0 = level, positive = left side up
pitch: pitch angle (rad), 0 = level, positive = front down
yaw:   heading (rad), 0 = east, positive = counter clockwise
vn:    velocity towards north (m/s)
ve:    velocity towards east (m/s)
vf:    forward velocity (m/s)
vl:    leftward velocity (m/s)
vu:    upward velocity (m/s)
ax:    acceleration along the vehicle's x, forward (m/s^2)
ay:    acceleration along the vehicle's y, left (m/s^2)
az:    acceleration along the vehicle's z, up (m/s^2)
af:    forward acceleration (m/s^2)
al:    leftward acceleration (m/s^2)
au:    upward acceleration (m/s^2)
wx:    angular rate around x (rad/s)
wy:    angular rate around y (rad/s)
wz:    angular rate around z (rad/s)
wf:    angular rate around the forward axis (rad/s)
wl:    angular rate around the leftward axis (rad/s)
wu:    angular rate around the upward axis (rad/s)
pos_accuracy: position accuracy (m)
vel_accuracy: velocity accuracy (m/s)
navstat: navigation status
numsats: number of satellites tracked
posmode: position mode
velmode: velocity mode
orimode: orientation mode
"""


def timestamp_lines(num_frames, offset=0.0):
    """KITTI-style timestamps (nanosecond digits) at FPS Hz from 2000-01-01 12:00:00, shifted by offset seconds."""
    base = datetime.datetime(2000, 1, 1, 12, 0, 0)
    out = []
    for i in range(num_frames):
        secs, nanos = divmod(round((i / FPS + offset) * 1e9), 10 ** 9)
        out.append("{:%Y-%m-%d %H:%M:%S}.{:09d}".format(base + datetime.timedelta(seconds=secs), nanos))
    return out


def _write_lines(path, lines):
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))


# ---------------------------------------------------------------- drives, splits, command line

def drive_folder(drive):
    """The drive's path relative to the data root, as written in split files."""
    return "{0}/{0}_drive_{1:04d}_sync".format(DATE, drive)


def check_arguments(num_frames, width, height, seed, ext, test_frames=1, workers=1, min_frames=4):
    """Raise ValueError naming the offending flag for values the generator cannot honour."""
    if int(num_frames) != num_frames or num_frames < min_frames:
        why = " (train/val frames need a frame before and after them)" if min_frames > 1 else ""
        raise ValueError("--frames must be an integer >= {}{}, got {}".format(min_frames, why, num_frames))
    if test_frames is not None and (int(test_frames) != test_frames or test_frames < 1):
        raise ValueError("--test_frames must be an integer >= 1, got {}".format(test_frames))
    if not (32 <= width <= 4096) or int(width) != width:
        raise ValueError("--width must be an integer in 32..4096, got {}".format(width))
    if not (16 <= height <= 4096) or int(height) != height:
        raise ValueError("--height must be an integer in 16..4096, got {}".format(height))
    if int(seed) != seed or seed < 0:
        raise ValueError("--seed must be a non-negative integer, got {}".format(seed))
    if ext not in (".jpg", ".png"):
        raise ValueError("image extension must be '.jpg' or '.png', got {!r}".format(ext))
    if workers is not None and (int(workers) != workers or workers < 1):
        raise ValueError("--workers must be an integer >= 1, got {}".format(workers))


def _write_calibration(date_dir, width, height):
    """Write the date's calibration files, refusing to mix image sizes within one date folder."""
    for name, lines in calibration_texts(width, height).items():
        path = os.path.join(date_dir, name)
        text = "".join(line + "\n" for line in lines)
        if os.path.exists(path):
            with open(path) as f:
                if f.read() != text:
                    raise ValueError("{} exists with a different calibration (another image size?)".format(path))
            continue
        with open(path, "w") as f:
            f.write(text)


def _refuse_existing(path):
    if os.path.exists(path):
        raise FileExistsError("{} already exists; choose another --out or remove it first".format(path))


def generate_drive(out_dir, drive=TRAIN_DRIVE, num_frames=DEFAULTS["num_frames"], width=DEFAULTS["width"],
                   height=DEFAULTS["height"], seed=DEFAULTS["seed"], ext=DEFAULTS["ext"], workers=None):
    """Render one drive (its own street, from seed and drive number) with the date's calibration under out_dir.
    Returns the drive's folder relative to out_dir and the cam-0 poses (N, 4, 4, camera -> world, in the scene
    frame x right, y up, z along the street)."""
    check_arguments(num_frames, width, height, seed, ext, workers=workers, min_frames=1)
    folder = drive_folder(drive)
    path = os.path.join(out_dir, folder)
    _refuse_existing(path)
    rng = np.random.default_rng([seed, drive])
    poses = make_path(rng, num_frames)
    scene = build_scene(rng, -60.0, poses[-1, 2, 3] + 200.0)
    noise = Noise(rng)
    date_dir = os.path.join(out_dir, DATE)
    os.makedirs(date_dir, exist_ok=True)
    _write_calibration(date_dir, width, height)
    for sub in ("image_02/data", "image_03/data", "velodyne_points/data", "oxts/data",
                "proj_depth/groundtruth/image_02", "proj_depth/groundtruth/image_03"):
        os.makedirs(os.path.join(path, sub))
    stamps = timestamp_lines(num_frames)
    for sub in ("image_02", "image_03", "oxts", "velodyne_points"):
        _write_lines(os.path.join(path, sub, "timestamps.txt"), stamps)
    _write_lines(os.path.join(path, "velodyne_points", "timestamps_start.txt"), timestamp_lines(num_frames, -0.05))
    _write_lines(os.path.join(path, "velodyne_points", "timestamps_end.txt"), timestamp_lines(num_frames, 0.05))
    with open(os.path.join(path, "oxts", "dataformat.txt"), "w") as f:
        f.write(OXTS_FORMAT)
    for i, line in enumerate(oxts_lines(poses)):
        _write_lines(os.path.join(path, "oxts", "data", "{:010d}.txt".format(i)), [line])

    job = Drive(path, scene, noise, poses, width, height, ext)
    workers = min(workers or os.cpu_count() or 1, num_frames)
    if workers == 1:
        for i in range(num_frames):
            render_frame(job, i)
    else:
        with multiprocessing.get_context("fork").Pool(workers, _init_worker, (job,)) as pool:
            for _ in pool.imap_unordered(_render_in_worker, range(num_frames), chunksize=2):
                pass
    return {"folder": folder, "poses": poses}


def split_lines(train_folder, num_train, test_folder, num_test, seed):
    """Train/val lines (both sides; every frame with a -1 and +1 neighbour, 10% of them to val, chosen from seed)
    and eigen-style test lines (left camera, every frame of the test drive, zero-padded frame numbers)."""
    middle = np.arange(1, num_train - 1)
    rng = np.random.default_rng([seed, 0])
    val = set(rng.choice(middle, size=max(1, round(0.1 * len(middle))), replace=False).tolist())
    lines = {"train": [], "val": []}
    for frame in middle.tolist():
        for side in "lr":
            lines["val" if frame in val else "train"].append("{} {} {}".format(train_folder, frame, side))
    lines["test"] = ["{} {:010d} l".format(test_folder, frame) for frame in range(num_test)]
    return lines


def generate_dataset(out_dir, num_frames=DEFAULTS["num_frames"], width=DEFAULTS["width"], height=DEFAULTS["height"],
                     seed=DEFAULTS["seed"], ext=DEFAULTS["ext"], test_frames=None, workers=None, splits_dirs=()):
    """Render the train drive (num_frames) and the test drive (test_frames, default num_frames // 5) and write
    {train,val,test}_files.txt to <out_dir>/splits and to every folder in splits_dirs. Returns a summary dict."""
    check_arguments(num_frames, width, height, seed, ext, test_frames, workers)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError("--out {} exists and is not a directory".format(out_dir))
    test_frames = max(1, num_frames // 5) if test_frames is None else test_frames
    for drive in (TRAIN_DRIVE, TEST_DRIVE):  # before rendering anything
        _refuse_existing(os.path.join(out_dir, drive_folder(drive)))
    train = generate_drive(out_dir, TRAIN_DRIVE, num_frames, width, height, seed, ext, workers)
    test = generate_drive(out_dir, TEST_DRIVE, test_frames, width, height, seed, ext, workers)
    lines = split_lines(train["folder"], num_frames, test["folder"], test_frames, seed)
    split_paths = []
    for folder in (os.path.join(out_dir, "splits"),) + tuple(splits_dirs):
        os.makedirs(folder, exist_ok=True)
        for name, rows in lines.items():
            split_paths.append(os.path.join(folder, name + "_files.txt"))
            _write_lines(split_paths[-1], rows)
    return {"drives": [train["folder"], test["folder"]], "poses": [train["poses"], test["poses"]],
            "splits": split_paths, "frames": num_frames + test_frames}


def main(argv=None):
    parser = argparse.ArgumentParser(description="Render a synthetic street as KITTI raw drives with splits.")
    parser.add_argument("--out", required=True, help="data root to write (use it as --data_path)")
    parser.add_argument("--frames", type=int, default=DEFAULTS["num_frames"], help="frames in the train/val drive")
    parser.add_argument("--test_frames", type=int, default=None, help="frames in the test drive (default frames/5)")
    parser.add_argument("--width", type=int, default=DEFAULTS["width"])
    parser.add_argument("--height", type=int, default=DEFAULTS["height"])
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument("--png", action="store_true", help="write PNG images instead of JPEG (quality 92)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--splits_dir", default=None, help="also write the split files here, e.g. splits/synthetic")
    opt = parser.parse_args(argv)
    start = time.time()
    try:
        summary = generate_dataset(opt.out, opt.frames, opt.width, opt.height, opt.seed, ".png" if opt.png else ".jpg",
                                   opt.test_frames, opt.workers, (opt.splits_dir,) if opt.splits_dir else ())
    except (ValueError, FileExistsError) as err:
        parser.error(str(err))
    seconds = time.time() - start
    for folder in summary["drives"]:
        print("wrote {}".format(os.path.join(opt.out, folder)))
    for path in summary["splits"]:
        print("wrote {}".format(path))
    print("{} frames ({}x{}, both cameras, velodyne, depth) in {:.1f} s: {:.2f} frames/s".format(
        summary["frames"], opt.width, opt.height, seconds, summary["frames"] / seconds))


if __name__ == "__main__":
    main()
