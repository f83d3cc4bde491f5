"""Files of the 3D outputs: coloured point clouds (PLY), camera paths (KITTI odometry format)
and their top-down plots.

PLY files are binary little-endian with the standard vertex header (x y z float, red green
blue uchar) that Open3D, MeshLab and CloudCompare read; read_ply also reads ASCII ones.
A camera path file has one line per frame: the 12 numbers of its 3 x 4 camera-to-first-camera
pose, row by row, as KITTI odometry's poses/NN.txt.
"""
import os

import numpy as np

from utils import errors_naming

PLY_TYPES = {"char": "i1", "uchar": "u1", "int8": "i1", "uint8": "u1", "short": "i2", "ushort": "u2",
             "int16": "i2", "uint16": "u2", "int": "i4", "uint": "u4", "int32": "i4", "uint32": "u4",
             "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
PLY_VERTEX = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]


def write_ply(path, points, colors, comment=None):
    """Write N x 3 points and their N x 3 uint8 colours as a binary PLY file."""
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    if len(points) != len(colors):
        raise ValueError("{}: {} points but {} colours".format(path, len(points), len(colors)))
    vertices = np.empty(len(points), dtype=PLY_VERTEX)
    for i, name in enumerate("xyz"):
        vertices[name] = points[:, i]
    for i, name in enumerate(("red", "green", "blue")):
        vertices[name] = colors[:, i]
    header = ["ply", "format binary_little_endian 1.0"]
    header += ["comment " + line for line in (comment or "").splitlines()]
    header += ["element vertex {}".format(len(points))]
    header += ["property {} {}".format("float" if t == "<f4" else "uchar", n) for n, t in PLY_VERTEX]
    header += ["end_header"]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with errors_naming(path), open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(vertices.tobytes())


def read_ply(path):
    """(N x 3 float32 points, N x 3 uint8 colours or None, comments) of the vertices of a PLY
    file (binary little-endian or ASCII, vertex element first)."""
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise ValueError("{}: not a PLY file".format(path))
        fmt, count, fields, comments, in_vertex = None, None, [], [], False
        while True:
            line = f.readline()
            if not line:
                raise ValueError("{}: the header has no end_header".format(path))
            words = line.decode("ascii", "replace").split()
            if not words:
                continue
            if words[0] == "end_header":
                break
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "comment":
                comments.append(line.decode("ascii", "replace")[len("comment "):].rstrip("\n"))
            elif words[0] == "element":
                in_vertex = count is None  # only the first element, the vertices, is read
                if in_vertex and words[1] != "vertex":
                    raise ValueError("{}: the first element is {}, not vertex".format(path, words[1]))
                count = int(words[2]) if in_vertex else count
            elif words[0] == "property" and in_vertex:
                if words[1] == "list" or words[1] not in PLY_TYPES:
                    raise ValueError("{}: vertex property {} not supported".format(path, " ".join(words[1:])))
                fields.append((words[2], PLY_TYPES[words[1]]))
        if fmt not in ("binary_little_endian", "ascii") or count is None:
            raise ValueError("{}: expected a binary_little_endian or ascii PLY with vertices".format(path))
        if fmt == "ascii":
            rows = np.loadtxt(f, max_rows=count, ndmin=2)
            vertices = np.empty(count, dtype=[(n, t) for n, t in fields])
            for i, (name, _) in enumerate(fields):
                vertices[name] = rows[:, i]
        else:
            vertices = np.frombuffer(f.read(), dtype=[(n, "<" + t) for n, t in fields], count=count)
    points = np.stack([vertices[n] for n in "xyz"], axis=1).astype(np.float32)
    names = [n for n, _ in fields]
    colors = None
    if all(n in names for n in ("red", "green", "blue")):
        colors = np.stack([vertices[n] for n in ("red", "green", "blue")], axis=1).astype(np.uint8)
    return points, colors, comments


def write_trajectory(path, poses):
    """Write N x 4 x 4 (or N x 3 x 4) camera-to-first-camera poses in KITTI odometry format."""
    poses = np.asarray(poses, dtype=np.float64)[:, :3, :4].reshape(-1, 12)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with errors_naming(path):
        np.savetxt(path, poses, fmt="%.6e")


def read_trajectory(path):
    """N x 4 x 4 poses of a KITTI odometry poses file."""
    rows = np.loadtxt(path, ndmin=2)
    if rows.shape[1] != 12:
        raise ValueError("{}: expected 12 numbers per line, got {}".format(path, rows.shape[1]))
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    poses[:, :3, :4] = rows.reshape(-1, 3, 4)
    return poses


def plot_trajectory(path, poses, unit="m", title=None):
    """Save a top-down plot (x right, z forward of the first camera) of the camera positions."""
    from matplotlib.figure import Figure  # not pyplot: its backend is the caller's (a notebook's)

    positions = np.asarray(poses)[:, :3, 3]
    figure = Figure(figsize=(6, 6))
    axes = figure.subplots()
    axes.plot(positions[:, 0], positions[:, 2], "-", color="tab:blue", lw=1.5, label="camera path")
    axes.plot(*positions[0, [0, 2]], "o", color="tab:green", label="first frame")
    axes.plot(*positions[-1, [0, 2]], "s", color="tab:red", label="last frame")
    axes.set_xlabel("x, right, {}".format(unit))
    axes.set_ylabel("z, forward, {}".format(unit))
    axes.set_aspect("equal", adjustable="datalim")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best")
    axes.set_title(title or "camera path seen from above")
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with errors_naming(path):
        figure.savefig(path, dpi=100)
