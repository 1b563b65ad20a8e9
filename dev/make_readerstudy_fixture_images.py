"""Write the tiny SYNTHETIC images that Testing/fixtures/readerstudy/small_study.yaml names (C1..C4).

Each is an 8 x 8 x 4 float32 NIfTI (1 x 1 x 2 mm) of constant value 10 * case + image-set index, the same
content the reader-study tests write into their temporary study folders, so that
``neuroshift reader-study create Testing/fixtures/readerstudy/small_study.yaml`` works as it is.
Run from the repository root: ``python dev/make_readerstudy_fixture_images.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from neuroshift.io import Volume, write_volume

FIXTURES = Path(__file__).resolve().parents[1] / "Testing" / "fixtures" / "readerstudy"


def main() -> None:
    doc = yaml.safe_load((FIXTURES / "small_study.yaml").read_text(encoding="utf-8"))
    for k, case in enumerate(doc["cases"]):
        for j, (image_set, rel) in enumerate((case.get("images") or {}).items()):
            path = FIXTURES / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            vol = Volume(np.full((4, 8, 8), 10.0 * k + j, np.float32), [1.0, 1.0, 2.0], [0.0, 0.0, 0.0])
            write_volume(vol, path)
            print(path)


if __name__ == "__main__":
    main()
