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


@pytest.mark.parametrize(
    "module, name, new_module",
    [
        (
            "speechbrain_datar.pretrained.checkpoint_import",
            "read_state_dict",
            "speechbrain_datar.lobes.checkpoint_mapping",
        ),
        (
            "speechbrain_datar.pretrained.checkpoint_import",
            "resize_table",
            "speechbrain_datar.lobes.checkpoint_mapping",
        ),
        ("speechbrain_datar.lobes.models.ast", "MultiHeadSelfAttention", "speechbrain_datar.nnet.vit"),
        ("speechbrain_datar.pretrained.export", "AUDIO_PIPELINE", "speechbrain_datar.inference.sliding_window"),
        ("speechbrain_datar.pretrained.export", "AUDIO_VISUAL_PIPELINE", "speechbrain_datar.inference.temporal_crops"),
    ],
)
def test_names_imported_from_their_old_module_warn_and_are_the_new_ones(module, name, new_module):
    import importlib

    with pytest.warns(DeprecationWarning, match=f"version 0.4: use {new_module}.{name}"):
        old = getattr(importlib.import_module(module), name)
    assert old is getattr(importlib.import_module(new_module), name)


def test_a_name_that_never_was_is_an_attribute_error():
    import speechbrain_datar.pretrained.export as export

    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = export.nothing
