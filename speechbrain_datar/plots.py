"""Figures of this package: confusion matrices, what DATAR does (the adaptor's enhancement and the deformable
blocks' sampling points), and when each class sounds. Used by the recipes' test reports and by
``python -m speechbrain_datar.visualize``. Needs matplotlib (``pip install speechbrain-datar[plot]``).
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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
        """Draws one spectrogram-shaped image with its label."""
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
        show(
            ax,
            spectrogram,
            f"stage {block['stage'] + 1}, block {block['block'] + 1}: deformable sampling points",
            "gray",
        )
        stride_y, stride_x = block["stride"]
        positions = block["positions"][0].detach().float().cpu().numpy()  # groups, Hk, Wk, 2
        refs = block["references"].detach().float().cpu().numpy().reshape(-1, 2)
        ax.scatter(
            (refs[:, 1] + 0.5) * stride_x, (refs[:, 0] + 0.5) * stride_y, s=2, c="white", alpha=0.35, linewidths=0
        )
        for g, group in enumerate(positions):
            points = group.reshape(-1, 2)
            step = max(1, len(points) // max_points_per_group)
            points = points[::step]
            ax.scatter(
                (points[:, 1] + 0.5) * stride_x,
                (points[:, 0] + 0.5) * stride_y,
                s=4,
                color=colours[g % 10],
                label=f"group {g + 1}",
                linewidths=0,
            )
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        ax.legend(loc="upper right", fontsize=6, markerscale=2, ncol=min(4, len(positions)))
    axes[-1].set_xlabel("frame (10 ms)")
    return save_figure(fig, path, title)


def plot_timeline(spectrogram, frame_seconds, probs, resolution, labels, found, path, title=None, top=8, offset=0.0):
    """Draws a recording's spectrogram over the probabilities of its ``top`` classes through time, and the
    segments found (``(start, end, label, score)``) as bars on their rows; row 0 of ``probs`` starts at
    ``offset`` seconds (``timeline_rows``)."""
    probs = np.asarray(probs)
    order = np.argsort(-probs.max(axis=0))[: min(top, probs.shape[1])]
    fig, (ax_spec, ax_probs) = plt.subplots(
        2, 1, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [1.2, 1]}
    )
    seconds = spectrogram.shape[0] * frame_seconds
    ax_spec.imshow(
        np.asarray(spectrogram).T,
        origin="lower",
        aspect="auto",
        cmap="magma",
        extent=(0, seconds, 0, spectrogram.shape[1]),
    )
    ax_spec.set_ylabel("mel bin")
    ax_probs.imshow(
        probs[:, order].T,
        origin="lower",
        aspect="auto",
        cmap="viridis",
        vmin=0,
        vmax=1,
        extent=(offset, offset + probs.shape[0] * resolution, -0.5, len(order) - 0.5),
        interpolation="nearest",
    )
    row_of = {labels[c]: row for row, c in enumerate(order)}
    for start, end, label, _score in found:
        if label in row_of:
            ax_probs.plot([start, end], [row_of[label]] * 2, color="white", linewidth=3, solid_capstyle="butt")
    ax_probs.set_yticks(range(len(order)), [labels[c] for c in order], fontsize=8)
    ax_probs.set_xlabel(f"seconds (class probabilities every {resolution:.2f} s; bars: segments found)")
    ax_probs.set_xlim(0, seconds)
    return save_figure(fig, path, title)
