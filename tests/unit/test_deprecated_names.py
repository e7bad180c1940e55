"""Names of version 0.2 that moved keep working for one release and say where they went."""

import pytest


def test_the_timelines_mixin_is_the_streaming_interface(micro_audio_classifier, tmp_path):
    """Version 0.2's mixin, used as it was (beside SpeechBrain's EncoderClassifier), gives timelines."""
    from speechbrain.inference.classifiers import EncoderClassifier

    from speechbrain_datar.inference.interfaces import StreamingInterface, Timelines

    class WithTimelines(Timelines, EncoderClassifier):
        pass

    with pytest.warns(DeprecationWarning, match="StreamingInterface"):
        model = WithTimelines.from_hparams(source=micro_audio_classifier.exported_folder, savedir=str(tmp_path))
    assert isinstance(model, StreamingInterface) and model.timeline_rows() == pytest.approx((0.12, 0.44))


def test_the_audio_visual_export_settings_are_still_given():
    from speechbrain_datar.training.recipe import audio_visual_export

    audio_visual = dict(n_frames=8, clip_seconds=5.0, eval_crops=4, frame_norm="norm")
    audio_visual.update(frame_size=224, frame_sampling="uniform", frame_stride=1)
    with pytest.warns(DeprecationWarning, match="evaluation"):
        assert audio_visual_export(dict(audio_visual, n_frames=0)) is None
    with pytest.warns(DeprecationWarning):
        settings = audio_visual_export(audio_visual)
    assert settings["eval_crops"] == 4 and settings["frames"]["n_frames"] == 8 and settings["frames"]["size"] == 224


def test_audio_classifier_is_the_streaming_classifier(micro_audio_classifier, tmp_path):
    import numpy as np
    import soundfile

    from speechbrain_datar.inference.interfaces import AudioClassifier

    path = str(tmp_path / "clip.wav")
    soundfile.write(path, 0.1 * np.random.default_rng(1).standard_normal(16000 * 3), 16000)
    with pytest.warns(DeprecationWarning, match="StreamingClassifier"):
        old = AudioClassifier.from_hparams(source=micro_audio_classifier.exported_folder, savedir=str(tmp_path / "l"))
    assert old.classify_file(path)[3] == micro_audio_classifier.classify_file(path)[3]


def test_the_brain_methods_of_version_0_2_call_the_new_ones():
    from types import SimpleNamespace

    from speechbrain_datar.training.brain import AudioClassificationBrain

    brain = SimpleNamespace(batch_features=lambda batch, stage: ("features", batch, stage), batch_frames=lambda b: b)
    with pytest.warns(DeprecationWarning, match="batch_features"):
        assert AudioClassificationBrain.compute_features(brain, "batch", "stage") == ("features", "batch", "stage")
    with pytest.warns(DeprecationWarning, match="batch_frames"):
        assert AudioClassificationBrain.compute_frames(brain, "batch") == "batch"
