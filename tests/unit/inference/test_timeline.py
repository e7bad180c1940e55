"""Class timelines: why DATAR's final-map columns are one, and every audio interface has one."""

import numpy as np
import pytest
import torch


def test_the_clips_logits_are_the_mean_of_its_columns_logits():
    """Why DATAR's final-map columns are a timeline: its clip embedding is their mean and its head is linear
    up to the sigmoid. Checked on a clip that fills whole columns and on one that does not."""
    from conftest import randomise_offsets

    from speechbrain_datar.inference.timeline import column_log_probs
    from speechbrain_datar.lobes.models.datar import DATAR
    from speechbrain_datar.nnet.classifier import Classifier

    encoder = randomise_offsets(DATAR("micro", n_mels=32)).eval()
    head = Classifier(encoder.embedding_dim, 4, multi_label=True).eval()
    with torch.no_grad():
        for frames in (128, 150):
            feats = torch.randn(1, frames, 32)
            clip = head(encoder(feats))["label"][0, 0]
            columns = column_log_probs(encoder, head, feats)["label"][0]
            assert columns.shape == (-(-frames // 32), 4)
            to_logit = lambda lp: lp - torch.log(-torch.expm1(lp))  # noqa: E731
            assert torch.allclose(to_logit(columns).mean(dim=0), to_logit(clip), atol=1e-4)


@pytest.mark.parametrize("heads", [{"label": 3}, {"verb": 3, "noun": 4}])
@pytest.mark.parametrize("method", ["windows", "columns"])
def test_every_audio_interface_has_a_timeline(tmp_path, heads, method):
    """Single-label and multi-head models (random weights): rows cover the file at the stated resolution."""
    import soundfile
    from speechbrain.dataio.encoder import CategoricalEncoder

    from speechbrain_datar.dataio.normalization import DatasetNormalization
    from speechbrain_datar.inference.interfaces import MultiHeadAudioClassifier, StreamingClassifier
    from speechbrain_datar.inference.results import Timeline
    from speechbrain_datar.lobes.models.datar import DATAR
    from speechbrain_datar.nnet.classifier import build_classifier
    from speechbrain_datar.pretrained.export import export_classifier

    encoders = {}
    for key, n in heads.items():
        encoders[key] = CategoricalEncoder()
        encoders[key].update_from_iterable([f"{key}{i}" for i in range(n)])
    encoder = DATAR("micro", n_mels=32, reference_frames=201).eval()
    head = build_classifier(128, heads=heads if len(heads) > 1 else None, n_classes=heads.get("label")).eval()
    export_classifier(
        str(tmp_path / "m"),
        encoder=encoder,
        head=head,
        normalizer=DatasetNormalization(-5.0, 3.0),
        label_encoders=encoders,
        feature_options={"sample_rate": 16000, "n_mels": 32},
        window_frames=201,
        hop_frames=96,
    )
    path = str(tmp_path / "clip.wav")
    soundfile.write(path, 0.1 * np.random.default_rng(0).standard_normal(16000 * 5), 16000)
    interface = StreamingClassifier if len(heads) == 1 else MultiHeadAudioClassifier
    model = interface.from_hparams(source=str(tmp_path / "m"), savedir=str(tmp_path / "l"))
    result = model.timeline(path, threshold=0.0, method=method)
    assert set(result) == set(heads) and all(isinstance(timeline, Timeline) for timeline in result.values())
    for key, (probs, resolution, found) in result.items():
        assert probs.shape[1] == heads[key] and abs(probs.shape[0] * resolution - 5.0) < 1.0
        assert {label for _, _, label, _ in found} == set(encoders[key].lab2ind)  # threshold 0: every class
        # Rows tile the file from the first row's start (timeline_rows), which is where segments begin;
        # windows' rows stand for their centres, so as much is left at the end as at the start.
        _, offset = model.timeline_rows(method)
        assert min(start for start, _, _, _ in found) == pytest.approx(offset, abs=1e-6)
        assert 5.0 - offset - resolution <= offset + probs.shape[0] * resolution <= 5.0 + resolution
