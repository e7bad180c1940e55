#!/usr/bin/env python3
"""Seconds that VGGSound's preparation takes on a folder of 10 s mp4 clips (640x360 H.264 at 25 fps, AAC).

Every clip is opened and its sound decoded (checks for truncation, silence, non-finite samples); the
normalisation statistics are left out (they do not depend on the container). Run it against another version
of the package with ``PYTHONPATH=<that checkout>`` to compare, e.g. the previous release's:

    python benchmarks/preparation_speed.py --clips 24 --repeats 3
    PYTHONPATH=/path/to/previous/checkout python benchmarks/preparation_speed.py --clips 24 --repeats 3
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time


def main(argv=None):
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder", default="", help="reuse clips made by an earlier run")
    # Not the package's add_device_argument: the package is imported after the options, from PYTHONPATH's
    # checkout, which may be a release without it.
    parser.add_argument("--device", default="cpu", choices=["cpu"], help="cpu only: preparation decodes on the CPU")
    args = parser.parse_args(argv)
    import speechbrain_datar
    from speechbrain_datar.benchmarking import make_clips, recipe_module
    from speechbrain_datar.dataio.prepare import prepare_dataset

    prepare_vggsound = recipe_module("VGGSound", "vggsound_prepare").prepare_vggsound

    folder = args.folder or tempfile.mkdtemp()
    audio = os.path.join(folder, "audio")
    if not os.path.isdir(audio):
        os.makedirs(audio)
        for stem in make_clips(audio, args.clips):
            os.rename(stem + ".mp4", os.path.join(audio, f"{os.path.basename(stem)}_000000.mp4"))
            os.remove(stem + ".wav")
        with open(os.path.join(folder, "vggsound.csv"), "w") as f:
            f.writelines(f"clip{i},0,class{i % 4},{'test' if i % 6 == 0 else 'train'}\n" for i in range(args.clips))
    times = []
    for _ in range(args.repeats):
        save = tempfile.mkdtemp()
        start = time.perf_counter()
        prepare_dataset(prepare_vggsound, save, dataset_options={"data_folder": folder}, valid_ratio=0.1, seed=1)
        times.append(time.perf_counter() - start)
        shutil.rmtree(save)
    print(f"package: {os.path.dirname(speechbrain_datar.__file__)}")
    print(f"clips folder: {folder}")
    print(
        f"preparation of {args.clips} 10 s mp4 clips: median {statistics.median(times):.2f} s "
        f"(runs: {', '.join(f'{t:.2f}' for t in times)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
