"""Fetch the reference Monodepth2's KITTI split files into the project's splits/ folder.

Either downloads them from the reference repository on GitHub (pinned to the
commit the project was checked against) or copies them from a local checkout
(or its splits/ folder) given with --from.  Every file is checked against its
known SHA-256 unless --no-verify.

    python3 tools/get_splits.py                       # download
    python3 tools/get_splits.py --from ~/monodepth2   # copy from a checkout
"""
import argparse
import hashlib
import os
import sys
import urllib.request

REPO_COMMIT = "b676244e5a1ca55564eb5d16ab521a48f823af31"
RAW_URL = f"https://raw.githubusercontent.com/nianticlabs/monodepth2/{REPO_COMMIT}/splits/"
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "splits")

FILES = {
    "benchmark/eigen_to_benchmark_ids.npy": "1c1ac4ea84c938622f228a4438661fdb66ec07a2380a54bd21cd28b6eeb1a4e8",
    "benchmark/test_files.txt": "b9b0746d2e5263d975fd082d6e82d592971adc9e6a2fdf370a8cf78519161d28",
    "benchmark/train_files.txt": "060fdce26c5cd0681b6cc7620a856c697caa78fd23ab7a9ba41fb39c70ae3860",
    "benchmark/val_files.txt": "5c65577de234037bec0c792d7bf44c60b7fb367449266054eb4612a5e92bfa08",
    "eigen/test_files.txt": "e226d4ca16e0e6e9695435014347dcf973588531330536fd8a68d298ef091a6b",
    "eigen_benchmark/test_files.txt": "d56e5e509e6960a01fb93795f85028ac6e4a82ad40e64b6e968988e4db95b9be",
    "eigen_full/train_files.txt": "1b491141d87b7af9e6706609b7ce858c198c3a4ca61d180c7dc90815d5f2a986",
    "eigen_full/val_files.txt": "9c4446772ec58aaa60acbeef0fa6d1e8ef1b346ad4f78272d056d10cf1993af9",
    "eigen_zhou/train_files.txt": "00173a231642151c4693274e701ddd4cae7916520a757c7a94eae8e1173f7b0c",
    "eigen_zhou/val_files.txt": "64a868b8d2c66c3979a2d74c22ea2e9146850d5b9f5786ed8e5f92201ba1ad04",
    "kitti_archives_to_download.txt": "9899630a856ea2661a06d223440561395792e15538ebe97f3b719a04b91e4386",
    "odom/test_files_09.txt": "8b999b6f974041663ba2f8aa6456ea338089a272119b7edd702f352278f43d26",
    "odom/test_files_10.txt": "f39c47e0c21f65d4503476375f2a786def34f54bd5d1cabf28c7e68f002986a1",
    "odom/train_files.txt": "ced6c5fd1b0b76e2a28d68e046421c1f0df08de8fb713ca305684d263af6d0e2",
    "odom/val_files.txt": "9cf46e1b873d6f9883015b1f77fcace51db424a1f0a765324957f46399b6db99",
}
SPLITS = sorted({name.split("/")[0] for name in FILES if "/" in name})


def selected_files(splits):
    """The files of the chosen splits (all of them if ``splits`` is empty)."""
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise SystemExit(f"unknown split(s) {', '.join(unknown)}; known: {', '.join(SPLITS)}")
    return [name for name in FILES
            if not splits or name.split("/")[0] in splits or name == "kitti_archives_to_download.txt"]


def source_folder(path):
    """The splits folder inside ``path`` (a checkout) or ``path`` itself."""
    inner = os.path.join(path, "splits")
    if os.path.isdir(inner):
        return inner
    if os.path.isdir(path):
        return path
    raise SystemExit(f"--from: no such folder: {path}")


def check_complete(folder, names):
    """SystemExit naming the files of `names` that `folder` lacks and the ways to get them."""
    missing = [name for name in names if not os.path.isfile(os.path.join(folder, name))]
    if not missing:
        return
    lacking = sorted({name.split("/")[0] for name in missing if "/" in name})
    message = (f"--from {folder} lacks {len(missing)} of the {len(names)} split files needed: "
               f"{', '.join(missing)}. They are in the reference's splits/ folder (a checkout of "
               f"nianticlabs/monodepth2; the published Paddle port's checkout has no splits/eigen); "
               f"run without --from to download them")
    complete = sorted({name.split("/")[0] for name in names if "/" in name} - set(lacking))
    if complete and "kitti_archives_to_download.txt" not in missing:
        message += f", or copy only the splits it has: --splits {' '.join(complete)}"
    raise SystemExit(message)


def read_local(folder, name):
    with open(os.path.join(folder, name), "rb") as f:
        return f.read()


def download(name, timeout=60):
    url = RAW_URL + name
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except OSError as e:
        raise SystemExit(f"download of {url} failed: {e}")


def write_atomic(path, data):
    """Write via a temporary name so an interrupted run leaves no half-written split."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".part", "wb") as f:
        f.write(data)
    os.replace(path + ".part", path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", metavar="DIR",
                        help="copy from this monodepth2 checkout or splits folder instead of downloading")
    parser.add_argument("--out", default=DEFAULT_OUT, help="destination folder (default: the project's splits/)")
    parser.add_argument("--splits", nargs="*", default=[], metavar="NAME",
                        help=f"only these splits (default: all of {', '.join(SPLITS)})")
    parser.add_argument("--no-verify", action="store_true", help="skip the SHA-256 check")
    args = parser.parse_args(argv)

    folder = source_folder(args.source) if args.source else None
    names = selected_files(args.splits)
    if folder:
        check_complete(folder, names)
    for name in names:
        data = read_local(folder, name) if folder else download(name)
        digest = hashlib.sha256(data).hexdigest()
        if not args.no_verify and digest != FILES[name]:
            where = os.path.join(folder, name) if folder else RAW_URL + name
            raise SystemExit(f"{where}: SHA-256 {digest} differs from the reference's {FILES[name]} "
                             "(pass --no-verify to accept it)")
        write_atomic(os.path.join(args.out, name), data)
    print(f"wrote {len(names)} split files to {args.out}")


if __name__ == "__main__":
    sys.exit(main())
