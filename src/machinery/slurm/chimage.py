"""env.kind ``charliecloud``: the image podman holds here becomes a Charliecloud image on the
cluster, once per image digest.

Here: ``ch-convert -i podman -o dir`` unpacks the image (with its ENV lines as
``/ch/environment``) into a local cache keyed by the image ID, once per runner. There: the
directory travels as one tar stream into ``<workdir>/images/<id>`` (unpacked aside, made
read-only, a manifest recorded, then renamed into place under a lock), once per cluster; every
later run checks the manifest and links nothing, sends nothing.

Why a directory image and not SquashFS: ``ch-run`` mounts a SquashFS file with squashfuse,
which needs ``/dev/fuse`` usable by the job's user; on the test machine (and many clusters)
it is root-only, while a directory image needs nothing but unprivileged user namespaces
(``ch-checkns``). The manifest check gives a directory what a single read-only file has.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from machinery.errors import UserError
from machinery.slurm.container import IMAGES_DIR
from machinery.slurm.envscript import VENV_MANIFEST
from machinery.slurm.script import Layout, q
from machinery.slurm.staging import human
from machinery.slurm.transport import Transport, first_cause

CACHE_ENV = "MLOPS_CH_CACHE"  # where converted images are kept here (default ~/.cache/...)
CONVERTED = ".converted"  # "<cache>/<id>.converted": the conversion finished
TAR_CHUNK = 1 << 20


@dataclass(frozen=True)
class LocalImage:
    reference: str
    image_id: str  # podman's image ID: the sha256 of the image's config, i.e. its content

    @property
    def short(self) -> str:
        return self.image_id[:16]


def _podman() -> list[str]:
    """podman on the storage ``make image`` builds into (IMAGE_STORAGE_ROOT etc.)."""
    if shutil.which("podman") is None:
        raise UserError("podman not found: env.kind charliecloud converts a podman image")
    cmd = ["podman"]
    for flag, var in (
        ("--root", "IMAGE_STORAGE_ROOT"),
        ("--runroot", "IMAGE_RUNROOT"),
        ("--storage-driver", "IMAGE_STORAGE_DRIVER"),
    ):
        if os.environ.get(var):
            cmd += [flag, os.environ[var]]
    return cmd


def resolve(reference: str) -> LocalImage:
    """The image's ID, before anything is sent: it is part of the job's identity."""
    if not reference:
        raise UserError(
            "env.image is empty: name the image for env.kind charliecloud as podman lists it "
            "(e.g. the one `make image` built)"
        )
    proc = subprocess.run(
        [*_podman(), "image", "inspect", "--format", "{{.Id}}", reference],
        capture_output=True,
        text=True,
    )
    image_id = proc.stdout.strip().removeprefix("sha256:")
    if proc.returncode != 0 or not image_id:
        raise UserError(
            f"container image {reference} not found in podman's storage (env.image): "
            "build it (`make image`) or name one that `podman images` lists"
        )
    return LocalImage(reference, image_id)


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlops" / "charliecloud"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _storage_env(tmp: Path) -> dict[str, str]:
    """ch-convert calls plain ``podman``: point it at IMAGE_STORAGE_ROOT by a storage.conf."""
    env = dict(os.environ)
    root = os.environ.get("IMAGE_STORAGE_ROOT")
    if root:
        runroot = os.environ.get("IMAGE_RUNROOT") or str(tmp / "runroot")
        driver = os.environ.get("IMAGE_STORAGE_DRIVER") or "overlay"
        conf = tmp / "storage.conf"
        conf.write_text(
            f'[storage]\ndriver = "{driver}"\ngraphroot = "{root}"\nrunroot = "{runroot}"\n'
        )
        env["CONTAINERS_STORAGE_CONF"] = str(conf)
    return env


def converted(image: LocalImage) -> tuple[Path, bool]:
    """The image as a Charliecloud directory here (converted now, or earlier: True if now)."""
    if shutil.which("ch-convert") is None:
        raise UserError(
            "ch-convert not found: install Charliecloud's builders "
            "(Debian: apt-get install charliecloud-builders)"
        )
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    dest = root / image.short
    with _locked(root / f"{image.short}.lock"):
        if (root / f"{image.short}{CONVERTED}").is_file() and dest.is_dir():
            return dest, False
        shutil.rmtree(dest, ignore_errors=True)
        with tempfile.TemporaryDirectory(prefix="mlops-ch-") as tmp:
            part = Path(tmp) / "image"
            proc = subprocess.run(
                ["ch-convert", "-i", "podman", "-o", "dir", image.reference, str(part)],
                capture_output=True,
                text=True,
                env=_storage_env(Path(tmp)),
            )
            if proc.returncode != 0:
                why = first_cause(proc.stderr, f"exit code {proc.returncode}").removeprefix(
                    "error: "
                )
                raise UserError(f"converting {image.reference} for Charliecloud failed: {why}")
            # ch-convert takes the name, not the ID: a re-tag meanwhile must not be cached
            # under the ID this run resolved.
            if resolve(image.reference).image_id != image.image_id:
                raise UserError(f"{image.reference} was re-tagged while it was converted: rerun")
            # `ch-run --set-env` reads the image's variables from here: never missing.
            (part / "ch").mkdir(exist_ok=True)
            (part / "ch/environment").touch()
            shutil.move(str(part), dest)
        (root / f"{image.short}{CONVERTED}").touch()
    return dest, True


def image_dir(layout: Layout, image: LocalImage) -> str:
    return f"{layout.workdir}/{IMAGES_DIR}/{image.short}"


def render_prune_images(layout: Layout, days: float) -> str:
    """Remove staged images no run has used for ``days`` (``<id>.used`` is touched by every
    run that uses one), each under its own lock, skipped while another run stages it."""
    if days <= 0:
        return ""
    minutes = max(int(days * 1440), 1)
    images = q(f"{layout.workdir}/{IMAGES_DIR}")
    return f"""\
for u in {images}/*.used; do
  [ -e "$u" ] || continue
  d="${{u%.used}}"
  [ "$d" = "$V" ] && continue
  if [ -n "$(find "$u" -maxdepth 0 -mmin +{minutes})" ]; then
    (flock -n 7 || exit 0; chmod -R u+w "$d" 2>/dev/null; rm -rf "$d" "$d.manifest" "$u") \
7>"$d.lock" || true
  fi
done
"""


def render_check(layout: Layout, image: LocalImage, prune_days: float = 0.0) -> str:
    """Is the image staged, and unchanged since (the venv's manifest rule)? Images unused
    for ``prune_days`` go."""
    return f"""\
V={q(image_dir(layout, image))}
{render_prune_images(layout, prune_days)}if [ ! -f "$V/.ready" ]; then
  echo image=missing
elif [ "$({VENV_MANIFEST})" = "$(cat "$V.manifest" 2>/dev/null)" ]; then
  touch "$V.used"
  echo image=ready
else
  echo image=changed
fi
"""


def render_stage_in(layout: Layout, image: LocalImage) -> str:
    """Unpack the image (tar on stdin) aside, make it read-only, record its manifest, rename it
    into place; under a lock, so concurrent runs stage it once (a loser drains its stream)."""
    images = q(f"{layout.workdir}/{IMAGES_DIR}")
    return f"""\
set -eo pipefail
umask 077
V={q(image_dir(layout, image))}
mkdir -p {images}
exec 8>"$V.lock"
flock 8
if [ -f "$V/.ready" ]; then
  cat > /dev/null
  echo image=present
  exit 0
fi
P="$V.part.$$"
trap 'chmod -R u+w "$P" 2>/dev/null || true; rm -rf "$P"' EXIT
if [ -d "$V" ]; then chmod -R u+w "$V"; rm -rf "$V"; fi
mkdir "$P"
tar -x -C "$P" || exit 4
# ch-run cannot make the mount point of the run dirs in a read-only image: make it now.
mkdir -p "$P"/{q(layout.runs)}
chmod -R a-w "$P"
(V="$P"; {VENV_MANIFEST}) > "$V.manifest"
chmod u+w "$P"; touch "$P/.ready"; chmod a-w "$P" "$P/.ready"
mv "$P" "$V"
trap - EXIT
touch "$V.used"
echo image=staged
"""


def _feed_dir(path: Path, sent: list[int]) -> Callable[[IO[bytes]], None]:
    def feed(stdin: IO[bytes]) -> None:
        with subprocess.Popen(
            ["tar", "-C", str(path), "-cf", "-", "."], stdout=subprocess.PIPE
        ) as tar:
            assert tar.stdout is not None
            while chunk := tar.stdout.read(TAR_CHUNK):
                stdin.write(chunk)
                sent[0] += len(chunk)

    return feed


def stage(
    transport: Transport,
    layout: Layout,
    image: LocalImage,
    say: Callable[[str], None],
    timings: dict[str, float],
    prune_days: float = 0.0,
) -> str:
    """Make sure the cluster holds ``image``; return its directory there."""
    where = image_dir(layout, image)
    res = transport.run(render_check(layout, image, prune_days))
    state = res.text.split("image=")[-1].strip() if "image=" in res.text else ""
    if res.rc != 0 or not state:
        raise UserError(f"login node: checking the container image failed: {res.error_line}")
    if state == "changed":
        raise UserError(
            f"the container image {where} changed after it was staged (manifest mismatch); "
            f"remove it to stage it again: chmod -R u+w {where} && rm -rf {where}"
        )
    if state == "ready":
        say(f"container image {image.reference} ({image.short}) already on the cluster")
        return where
    started = time.monotonic()
    local, fresh = converted(image)
    if fresh:
        timings["image_convert"] = time.monotonic() - started
        say(f"converted {image.reference} for Charliecloud in {timings['image_convert']:.1f} s")
    started = time.monotonic()
    sent = [0]
    res = transport.run(render_stage_in(layout, image), feed=_feed_dir(local, sent), timeout=3600)
    if res.rc != 0:
        why = res.error_line.removeprefix("error: ")
        raise UserError(f"staging the container image to the login node failed: {why}")
    timings["image_stage"] = time.monotonic() - started
    if "image=present" in res.text:
        say(f"container image {image.reference} ({image.short}) staged by a concurrent run")
    else:
        say(
            f"staged container image {image.reference} ({image.short}, {human(sent[0])}) "
            f"in {timings['image_stage']:.1f} s"
        )
    return where
