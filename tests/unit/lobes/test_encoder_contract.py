"""Every encoder of the package through the same checks: the contract of ``lobes.encoder.AudioEncoder``."""

import pytest
import torch

from speechbrain_datar.lobes.encoder import AudioEncoder
from speechbrain_datar.lobes.models.ast import AST
from speechbrain_datar.lobes.models.cnn14 import CNN14
from speechbrain_datar.lobes.models.datar import DATAR
from speechbrain_datar.lobes.models.mbt import MBT, LateFusion

N_MELS, FRAMES = 32, 100
VIDEO = dict(n_frames=2, image_size=32)

#: name -> (the encoder's maker, whether it takes video frames, whether a coarser time resolution and back
#: gives the same weights: AST and MBT resample their positional grid to the coarser one, which is what
#: coarse-to-fine training carries on from)
ENCODERS = {
    "DATAR": (lambda: DATAR("micro", n_mels=N_MELS), False, True),
    "AST": (lambda: AST("micro", n_mels=N_MELS, target_length=FRAMES), False, False),
    "CNN14": (lambda: CNN14(n_mels=N_MELS, emb_dim=16), False, True),
    "MBT (audio)": (lambda: MBT("micro", modalities=("audio",), n_mels=N_MELS, audio_frames=FRAMES), False, False),
    "MBT (audio-visual)": (lambda: MBT("micro", n_mels=N_MELS, audio_frames=FRAMES, **VIDEO), True, False),
    "late fusion": (
        lambda: LateFusion("datar", {"preset": "micro", "n_mels": N_MELS}, {"preset": "micro", **VIDEO}),
        True,
        True,
    ),
}


def build(name, seed=0):
    torch.manual_seed(seed)
    return ENCODERS[name][0]().eval()


def embed(name, model, feats, lengths=None):
    """The model's embedding of ``feats``, with the same video frames for every audio-visual call."""
    with torch.no_grad():
        if not ENCODERS[name][1]:
            return model(feats, lengths)
        frames = torch.randn(feats.shape[0], 2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        return model(feats, lengths, frames=frames)


def features(batch=2, frames=FRAMES, seed=0):
    return torch.randn(batch, frames, N_MELS, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(params=list(ENCODERS))
def name(request):
    return request.param


def test_an_encoder_is_an_audio_encoder_and_embeds_to_batch_1_dim(name):
    model = build(name)
    assert isinstance(model, AudioEncoder)
    out = embed(name, model, features())
    assert out.shape[0] == 2 and out.shape[-1] == model.embedding_dim and torch.isfinite(out).all()
    assert out.shape == (2, 1, model.embedding_dim) or ENCODERS[name][1]  # audio-visual: one row per modality
    assert model.export_frames(FRAMES) >= FRAMES and model.export_frames(FRAMES) % model.export_time_step == 0


def test_padded_frames_do_not_change_a_clips_embedding(name):
    model = build(name)
    short = features(1, 60, seed=2)
    padded = torch.cat((torch.nn.functional.pad(short, (0, 0, 0, FRAMES - 60)), features(1, seed=3)))
    alone = embed(name, model, short)
    in_batch = embed(name, model, padded, torch.tensor([60 / FRAMES, 1.0]))[:1]
    assert torch.allclose(alone, in_batch, atol=1e-5), (alone - in_batch).abs().max()


@pytest.mark.parametrize("patch_resize", [None, "pi"])
def test_set_time_resolution_round_trip_gives_the_model_back(name, patch_resize):
    """Back at factor 1 the model has its shapes and time grid again (and, unless its positional grid was
    resampled, its weights); at factor 2 it embeds to the same shape."""
    model = build(name)
    before, shapes = embed(name, model, features()), {k: v.shape for k, v in model.state_dict().items()}
    model.set_time_resolution(2, patch_resize)
    coarse = features(frames=FRAMES // 2) if patch_resize is None else features()
    assert embed(name, model, coarse).shape == before.shape
    model.set_time_resolution(1, patch_resize)
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes
    assert model.export_frames(FRAMES) == build(name).export_frames(FRAMES)
    after = embed(name, model, features())
    if ENCODERS[name][2] and patch_resize is None:
        assert torch.allclose(after, before, atol=1e-6)
    else:
        assert after.shape == before.shape and torch.isfinite(after).all()


def test_rebuilt_from_its_recorded_arguments_and_state_the_model_embeds_the_same(name, tmp_path):
    """What an export keeps of an encoder: its class, its constructor's arguments and its weights."""
    model = build(name)
    torch.save(model.state_dict(), tmp_path / "encoder.ckpt")
    rebuilt = type(model)(**model.init_kwargs).eval()
    rebuilt.load_state_dict(torch.load(tmp_path / "encoder.ckpt", weights_only=True))
    assert torch.equal(embed(name, rebuilt, features()), embed(name, model, features()))


def test_load_pretrained_takes_the_models_own_state(name):
    model, other = build(name), build(name, seed=1)
    assert not torch.allclose(embed(name, other, features()), embed(name, model, features()))
    other.load_pretrained(model.state_dict())
    assert torch.allclose(embed(name, other, features()), embed(name, model, features()), atol=1e-6)


def test_column_embeddings_exist_where_a_time_axis_is_followed(name):
    model = build(name)
    if model.time_column_frames is None:
        with pytest.raises(NotImplementedError, match="no time axis"):
            model.column_embeddings(features())
    else:
        with torch.no_grad():
            columns = model.column_embeddings(features())
        assert columns.shape == (2, -(-FRAMES // model.time_column_frames), model.embedding_dim)
