#!/usr/bin/env python3
"""Turns a copy of ESC-10 or ESC-50 kept as class folders into the official layout the recipe reads.

Some copies of ESC-50 hold one folder per class (``001 - Dog bark/1-100032-A.ogg``) instead of
``meta/esc50.csv`` and ``audio/``. The clips are the same; their names keep ESC-50's
``<fold>-<source>-<take>``. This tool writes ``<output>/meta/esc50.csv`` and copies every clip, unchanged,
to ``<output>/audio/<fold>-<source>-<take>-<target>.<ext>`` (the official naming). The class of a folder is
read from its name: the ten ESC-10 classes are recognised under their usual names ("Dog bark",
"Crackling fire", ...) and get ESC-50's category names and targets; other folder names are taken as
category names and numbered after them.

    python recipes/ESC50/class_folders_to_esc50.py /data/esc10_class_folders /data/esc10

Authors
 * speechbrain-datar contributors
"""

import argparse
import csv
import io
import os
import re
import shutil
import sys

#: ESC-10's classes: (ESC-50 category, target) by the names class-folder copies use for them.
ESC10_CLASSES = {
    "dog bark": ("dog", 0),
    "dog": ("dog", 0),
    "rooster": ("rooster", 1),
    "rain": ("rain", 10),
    "sea waves": ("sea_waves", 11),
    "fire crackling": ("crackling_fire", 12),
    "crackling fire": ("crackling_fire", 12),
    "baby cry": ("crying_baby", 20),
    "crying baby": ("crying_baby", 20),
    "person sneeze": ("sneezing", 21),
    "sneezing": ("sneezing", 21),
    "clock tick": ("clock_tick", 38),
    "helicopter": ("helicopter", 40),
    "chainsaw": ("chainsaw", 41),
}
CLIP_NAME = re.compile(r"^(?P<fold>[1-5])-(?P<source>[0-9A-Za-z]+)-(?P<take>[A-Za-z])(?:-\d+)?\.(?P<ext>wav|ogg|flac)$")
HEADER = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]


def class_of(folder_name, others):
    """ESC-50's category and target for a class folder's name (``"003 - Sea waves"`` -> ``("sea_waves", 11)``)."""
    name = re.sub(r"^\s*\d+\s*-\s*", "", folder_name).strip().lower().replace("_", " ")
    if name in ESC10_CLASSES:
        return ESC10_CLASSES[name]
    others.setdefault(name, 50 + len(others))
    return name.replace(" ", "_"), others[name]


def convert(source, output):
    """Writes ``output/meta/esc50.csv`` and ``output/audio/``; returns ``(clips copied, files skipped)``.

    Nothing is written unless ``source`` holds at least one clip; an output that already has a different
    ``esc50.csv`` is refused rather than overwritten.
    """
    if not os.path.isdir(source):
        raise SystemExit(f"error: {source} is not a folder")
    rows, skipped, others = [], [], {}
    for folder in sorted(os.listdir(source)):
        path = os.path.join(source, folder)
        if not os.path.isdir(path):
            continue
        category, target = class_of(folder, others)
        for name in sorted(os.listdir(path)):
            match = CLIP_NAME.match(name)
            if not match:
                skipped.append(os.path.join(folder, name))
                continue
            fold, src, take, ext = match["fold"], match["source"], match["take"], match["ext"]
            filename = f"{fold}-{src}-{take}-{target}.{ext}"
            esc10 = target in {t for _, t in ESC10_CLASSES.values()}
            rows.append((os.path.join(path, name), [filename, fold, str(target), category, str(esc10), src, take]))
    if not rows:
        raise SystemExit(f"error: no clip named <fold>-<source>-<take>.<wav|ogg|flac> in the class folders of {source}")
    csv_path = os.path.join(output, "meta", "esc50.csv")
    table = io.StringIO()
    csv.writer(table, lineterminator="\n").writerows([HEADER] + [row for _, row in rows])
    text = table.getvalue()
    if os.path.isfile(csv_path):
        with open(csv_path) as f:
            if f.read() != text:
                raise SystemExit(f"error: {csv_path} exists and differs: choose an empty output folder")
    os.makedirs(os.path.join(output, "audio"), exist_ok=True)
    os.makedirs(os.path.dirname(csv_path), exist_ok=True)
    for clip, row in rows:
        shutil.copyfile(clip, os.path.join(output, "audio", row[0]))
    with open(csv_path + ".part", "w", newline="") as f:
        f.write(text)
    os.replace(csv_path + ".part", csv_path)  # the CSV appears only once every clip is in place
    return len(rows), skipped


def main(argv=None):
    """Command line: converts a class-folder copy of ESC-50 or ESC-10 to the official layout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="folder of class folders (e.g. '001 - Dog bark/1-100032-A.ogg')")
    parser.add_argument("output", help="where meta/esc50.csv and audio/ are written")
    args = parser.parse_args(argv)
    copied, skipped = convert(args.source, args.output)
    print(f"{copied} clips -> {args.output}/audio, {args.output}/meta/esc50.csv")
    if skipped:
        print(f"skipped {len(skipped)} files whose names are not <fold>-<source>-<take>.<ext>: {skipped[:5]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
