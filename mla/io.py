"""Writers whose output is byte-identical for identical content (DVC hashes these files), and
atomic directory output (a failed step never leaves a partial result)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

# npz entries get this date instead of "now", so that rewriting a file gives the same bytes.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez`` (readable with ``np.load``) but byte-identical for identical arrays."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arrays[key]), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE), buf.getvalue())


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON with sorted keys and a trailing newline, so equal objects give equal bytes."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, sort_keys=True, indent=2, ensure_ascii=False)
        fh.write("\n")


@contextlib.contextmanager
def atomic_directory(out_dir: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``out_dir`` to fill; on success it replaces ``out_dir`` by rename.

    On any exception the temporary directory is removed and a pre-existing ``out_dir`` is left untouched.
    The sibling lives on the same filesystem, so the final rename is atomic; replacing an existing directory
    takes two renames (old out of the way, new in), which is the best POSIX offers for directories.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the final directory normal permissions
        yield tmp
        old = None
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.rename(out_dir, old / "d")
        try:
            os.rename(tmp, out_dir)
        except BaseException:
            if old is not None:  # put the previous output back
                os.rename(old / "d", out_dir)
                shutil.rmtree(old, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
