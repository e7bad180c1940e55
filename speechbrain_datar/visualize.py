"""Pictures of what DATAR does: the input adaptor's enhancement (the paper's Fig. 1), where the
deformable blocks sample keys (Fig. 3), confusion matrices, and when each class sounds in a recording
(``--timeline``).

Command line::

    python -m speechbrain_datar.visualize --model <exported folder> --audio clip.wav --output clip.png
    python -m speechbrain_datar.visualize --model <exported folder> --audio street.wav --output street.png --timeline

Needs matplotlib (``pip install speechbrain-datar[plot]``).
"""

import argparse
import os

import torch

from speechbrain_datar.plots import plot_confusion_matrix, plot_datar_views, plot_timeline, save_figure

__all__ = [
    "plot_confusion_matrix",
    "plot_datar_views",
    "plot_timeline",
    "save_figure",
    "visualize_clip",
    "visualize_timeline",
]


@torch.no_grad()
def visualize_clip(model_folder, audio_path, output_path, savedir=None):
    """Loads an exported model, classifies ``audio_path`` and draws the DATAR views.

    Returns
    -------
    str
        The predicted label.
    """
    from speechbrain.inference.classifiers import EncoderClassifier

    classifier = EncoderClassifier.from_hparams(
        source=os.path.abspath(model_folder),
        savedir=savedir or os.path.join(os.path.abspath(model_folder), ".loaded"),
    )
    windows = classifier.mods.embedding_model
    encoder = windows.encoder
    if not encoder.draws_sampling_points:
        raise ValueError(
            f"{model_folder} holds a {type(encoder).__name__}, which has no sampling points to draw "
            "(DATAR has): draw its --timeline instead"
        )
    wav = classifier.load_audio(audio_path).unsqueeze(0)
    if windows.features is not None:  # features are computed inside the sliding-window embedding
        feats = windows.normalizer(windows.features(wav), torch.ones(1))
    else:  # an export of version 0.1
        feats = classifier.mods.mean_var_norm(classifier.mods.compute_features(wav), torch.ones(1))
    window = windows.window_frames
    out = encoder.forward_features(feats[:, :window], return_sampling=True)
    label = classifier.classify_file(audio_path)[3][0]
    plot_datar_views(
        feats[0, :window].cpu(),
        out["adapted"][0].cpu(),
        out["sampling"],
        output_path,
        title=f"{os.path.basename(audio_path)}: predicted '{label}'",
    )
    return label


def visualize_timeline(model_folder, audio_path, output_path, threshold=0.5, savedir=None):
    """Draws when each class sounds in ``audio_path`` (a model of several heads: one figure per head, named
    ``<output>_<head>.png``); returns the segments by head."""
    return draw_timelines(model_folder, audio_path, output_path, threshold, savedir)


@torch.no_grad()
def draw_timelines(model_folder, audio_path, output_path, threshold=0.5, savedir=None):
    """``visualize_timeline``'s figures; returns the segments by head."""
    from speechbrain_datar.inference.interfaces import MultiHeadAudioClassifier

    # Any exported audio model loads as MultiHeadAudioClassifier, whose timeline gives every head's by name.
    model = MultiHeadAudioClassifier.from_hparams(
        source=os.path.abspath(model_folder), savedir=savedir or os.path.join(os.path.abspath(model_folder), ".loaded")
    )
    windows = model.mods.embedding_model
    wav = model.load_audio(audio_path).unsqueeze(0)
    feats = windows.normalizer(windows.features(wav), torch.ones(1))[0]
    results, names = model.timeline(audio_path, threshold), model.class_names()
    found_by_head = {}
    for key, (probs, resolution, found) in results.items():
        path = output_path if len(results) == 1 else f"{os.path.splitext(output_path)[0]}_{key}.png"
        plot_timeline(
            feats.cpu(),
            model.frame_seconds(),
            probs,
            resolution,
            names[key],
            found,
            path,
            offset=model.timeline_rows()[1],
            title=f"{os.path.basename(audio_path)}: {len(found)} segments at p >= {threshold}",
        )
        found_by_head[key] = found
    return found_by_head


def main(argv=None):
    """Command line: pictures of where the deformable blocks read, or a recording's timeline."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="exported model folder (hyperparams.yaml + ckpts)")
    parser.add_argument("--audio", required=True, help="audio file to draw")
    parser.add_argument("--output", required=True, help="PNG file to write")
    parser.add_argument(
        "--timeline", action="store_true", help="draw when each class sounds (class probabilities over time, segments)"
    )
    parser.add_argument("--threshold", type=float, default=0.5, help="with --timeline: a segment's probability")
    args = parser.parse_args(argv)
    for path, what in ((args.model, "model folder"), (args.audio, "audio file")):
        if not os.path.exists(path):
            parser.error(f"{what} {path} does not exist")
    if args.timeline:
        for key, found in draw_timelines(args.model, args.audio, args.output, args.threshold).items():
            for start, end, label, score in found:
                print(f"{start:8.2f} {end:8.2f}  {key}: {label}  {score:.3f}")
        print(f"wrote {args.output}")
        return
    label = visualize_clip(args.model, args.audio, args.output)
    print(f"predicted '{label}'; wrote {args.output}")


if __name__ == "__main__":
    main()
