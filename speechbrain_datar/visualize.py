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

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def save_figure(fig, path, title=None):
    """Gives ``fig`` its title, writes it to ``path`` (PNG) and closes it; returns ``path``."""
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion_matrix(matrix, labels, path):
    """Saves a confusion matrix ``[true, predicted]`` as a PNG with per-class recall on the rows."""
    matrix = np.asarray(matrix)
    n = len(labels)
    size = max(5.0, 0.45 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size, size))
    rows = matrix.sum(axis=1, keepdims=True).clip(min=1)
    ax.imshow(matrix / rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(matrix) / max(1, matrix.sum())
    ax.set_title(f"confusion matrix (accuracy {100 * accuracy:.1f}%)")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    colour = "white" if matrix[i, j] / rows[i, 0] > 0.5 else "black"
                    ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7, color=colour)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_datar_views(spectrogram, adapted, sampling, path, title=None, max_points_per_group=400):
    """Saves the spectrogram, the adaptor's output and each D block's sampling points.

    Arguments
    ---------
    spectrogram, adapted : array
        ``[time, n_mels]`` normalised features before and after the adaptor.
    sampling : list of dict
        From ``DATAR.forward_features(..., return_sampling=True)`` for one clip.
    path : str
        PNG file.
    title : str or None
        Figure title.
    max_points_per_group : int
        Points drawn per group at most (evenly thinned).
    """
    spectrogram, adapted = np.asarray(spectrogram), np.asarray(adapted)
    panels = 3 + len(sampling)
    fig, axes = plt.subplots(panels, 1, figsize=(10, 2.1 * panels), sharex=True)
    extent = (0, spectrogram.shape[0], 0, spectrogram.shape[1])

    def show(ax, image, label, cmap="magma"):
        ax.imshow(image.T, origin="lower", aspect="auto", extent=extent, cmap=cmap)
        ax.set_ylabel("mel bin")
        ax.set_title(label, fontsize=9, loc="left")

    show(axes[0], spectrogram, "log-mel spectrogram (normalised)")
    show(axes[1], adapted, "after the learnable input adaptor")
    difference = adapted - spectrogram
    bound = np.abs(difference).max() or 1.0
    axes[2].imshow(difference.T, origin="lower", aspect="auto", extent=extent, cmap="coolwarm", vmin=-bound, vmax=bound)
    axes[2].set_title("adaptor's enhancement λ(b + W*x)", fontsize=9, loc="left")
    axes[2].set_ylabel("mel bin")
    colours = plt.cm.tab10.colors
    for ax, block in zip(axes[3:], sampling):
        show(ax, spectrogram, f"stage {block['stage'] + 1}, block {block['block'] + 1}: deformable sampling points", "gray")
        stride_y, stride_x = block["stride"]
        positions = block["positions"][0].detach().float().cpu().numpy()  # groups, Hk, Wk, 2
        refs = block["references"].detach().float().cpu().numpy().reshape(-1, 2)
        ax.scatter((refs[:, 1] + 0.5) * stride_x, (refs[:, 0] + 0.5) * stride_y, s=2, c="white", alpha=0.35,
                   linewidths=0)
        for g, group in enumerate(positions):
            points = group.reshape(-1, 2)
            step = max(1, len(points) // max_points_per_group)
            points = points[::step]
            ax.scatter((points[:, 1] + 0.5) * stride_x, (points[:, 0] + 0.5) * stride_y, s=4,
                       color=colours[g % 10], label=f"group {g + 1}", linewidths=0)
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        ax.legend(loc="upper right", fontsize=6, markerscale=2, ncol=min(4, len(positions)))
    axes[-1].set_xlabel("frame (10 ms)")
    return save_figure(fig, path, title)


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
    if not hasattr(encoder, "forward_features") or not hasattr(encoder, "stages"):
        raise ValueError(f"{model_folder} does not hold a DATAR model")
    wav = classifier.load_audio(audio_path).unsqueeze(0)
    if windows.features is not None:  # features are computed inside the sliding-window embedding
        feats = windows.normalizer(windows.features(wav), torch.ones(1))
    else:  # an export of version 0.1
        feats = classifier.mods.mean_var_norm(classifier.mods.compute_features(wav), torch.ones(1))
    window = windows.window_frames
    out = encoder.forward_features(feats[:, :window], return_sampling=True)
    label = classifier.classify_file(audio_path)[3][0]
    plot_datar_views(
        feats[0, :window].cpu(), out["adapted"][0].cpu(), out["sampling"], output_path,
        title=f"{os.path.basename(audio_path)}: predicted '{label}'",
    )
    return label


def plot_timeline(spectrogram, frame_seconds, probs, resolution, labels, found, path, title=None, top=8):
    """Draws a recording's spectrogram over the probabilities of its ``top`` classes through time, and the
    segments found (``(start, end, label, score)``) as bars on their rows."""
    probs = np.asarray(probs)
    order = np.argsort(-probs.max(axis=0))[: min(top, probs.shape[1])]
    fig, (ax_spec, ax_probs) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True,
                                            gridspec_kw={"height_ratios": [1.2, 1]})
    seconds = spectrogram.shape[0] * frame_seconds
    ax_spec.imshow(np.asarray(spectrogram).T, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0,
                                                                                                  spectrogram.shape[1]))
    ax_spec.set_ylabel("mel bin")
    ax_probs.imshow(probs[:, order].T, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1,
                    extent=(0, probs.shape[0] * resolution, -0.5, len(order) - 0.5), interpolation="nearest")
    row_of = {labels[c]: row for row, c in enumerate(order)}
    for start, end, label, score in found:
        if label in row_of:
            ax_probs.plot([start, end], [row_of[label]] * 2, color="white", linewidth=3, solid_capstyle="butt")
    ax_probs.set_yticks(range(len(order)), [labels[c] for c in order], fontsize=8)
    ax_probs.set_xlabel(f"seconds (class probabilities every {resolution:.2f} s; bars: segments found)")
    ax_probs.set_xlim(0, seconds)
    return save_figure(fig, path, title)


@torch.no_grad()
def visualize_timeline(model_folder, audio_path, output_path, threshold=0.5, savedir=None):
    """Draws when each class sounds in ``audio_path`` (the model's final-map timeline); returns the segments."""
    from speechbrain_datar.inference.interfaces import AudioClassifier, AudioTagger

    with open(os.path.join(model_folder, "hyperparams.yaml")) as f:
        tagger = "\nthreshold:" in f.read()
    interface = AudioTagger if tagger else AudioClassifier
    model = interface.from_hparams(source=os.path.abspath(model_folder),
                                   savedir=savedir or os.path.join(os.path.abspath(model_folder), ".loaded"))
    probs, resolution, found = model.timeline(audio_path, threshold)
    windows = model.mods.embedding_model
    wav = model.load_audio(audio_path).unsqueeze(0)
    feats = windows.normalizer(windows.features(wav), torch.ones(1))[0]
    plot_timeline(feats.cpu(), model.frame_seconds(), probs, resolution, model.class_names(), found,
                  output_path, title=f"{os.path.basename(audio_path)}: {len(found)} segments at p >= {threshold}")
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="exported model folder (hyperparams.yaml + ckpts)")
    parser.add_argument("--audio", required=True, help="audio file to draw")
    parser.add_argument("--output", required=True, help="PNG file to write")
    parser.add_argument("--timeline", action="store_true",
                        help="draw when each class sounds (class probabilities over time, segments)")
    parser.add_argument("--threshold", type=float, default=0.5, help="with --timeline: a segment's probability")
    args = parser.parse_args(argv)
    for path, what in ((args.model, "model folder"), (args.audio, "audio file")):
        if not os.path.exists(path):
            parser.error(f"{what} {path} does not exist")
    if args.timeline:
        found = visualize_timeline(args.model, args.audio, args.output, args.threshold)
        for start, end, label, score in found:
            print(f"{start:8.2f} {end:8.2f}  {label}  {score:.3f}")
        print(f"wrote {args.output}")
        return
    label = visualize_clip(args.model, args.audio, args.output)
    print(f"predicted '{label}'; wrote {args.output}")


if __name__ == "__main__":
    main()
