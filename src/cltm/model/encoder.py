"""The speech encoder: a self-supervised model of one of the supported families, with its input settings.

Families (config.json `model_type` -> transformers class, chosen through AutoConfig / AutoModel):
HuBERT (`hubert`: mHuBERT-147, HuBERT base/large), wav2vec 2.0 (`wav2vec2`: wav2vec 2.0, XLS-R, MMS),
WavLM (`wavlm`) and data2vec-audio (`data2vec-audio`). A source is a hub id, a local directory saved with
save_pretrained, or `random` (a config of sizes). All end as a local directory (`results/encoder/`) written
once by the workflow, and every fine-tuning run loads that directory with the same call, so runs never
touch the network. Remote code is never run; safetensors weights are preferred.

Every load is checked: a checkpoint that leaves model weights missing (they would be randomly initialised:
NaN for data2vec-audio's positional convolution when read as HuBERT), has unused weights inside the
encoder (WavLM's relative-position weights when read as HuBERT, layers beyond num_hidden_layers), or has
weights of other shapes stops with an EncoderError naming the file and the keys.

How waveforms enter the model (`SpeechInputs`, attached to the loaded model as `speech_inputs`):
- normalisation: the folder's `preprocessor_config.json` (Wav2Vec2FeatureExtractor): with `do_normalize`,
  every segment the model sees (a training crop, a whole test clip) is made zero-mean / unit-variance by
  transformers' own `zero_mean_unit_var_norm`, as the feature extractor does; a folder without one is fed
  the waveform as it is (no normalisation, what fairseq's HuBERT base recipe trained on).
- padding: clips of different lengths share a batch (padded, with an attention mask; pooling ignores the
  padded frames) only where padding provably leaves each clip's output unchanged: a layer-normalised
  feature encoder (`feat_extract_norm: layer`, e.g. XLS-R, MMS, WavLM-large, HuBERT-large). A
  group-normalised one (HuBERT base, mHuBERT-147, wav2vec2-base, WavLM-base) normalises over time, so
  padding changes the clip's output: it gets equal-length crops in training and one clip at a time in
  evaluation. data2vec-audio, although layer-normalised, stacks convolutions in its positional
  embedding, whose second layer sees the first one's output on padded frames (not zeros): also unpadded.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, PretrainedConfig, Wav2Vec2FeatureExtractor
from transformers.utils import logging as hf_logging

from cltm.config.settings import encoder_source_kind
from cltm.errors import ConfigError

hf_logging.disable_progress_bar()  # one "Loading weights" bar per run would bury the run logs
# WavLM's attention passes torch a boolean padding mask and a float position bias: a deprecation warning
# from torch at every padded step, about transformers' code, not the run
warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask and attn_mask is deprecated")


class EncoderError(ConfigError):
    """The configured encoder cannot be loaded; the message says where it was looked for and what to do."""


# config.json model_type -> the transformers class AutoModel builds for it (named here for messages)
FAMILIES = {
    "hubert": "HubertModel",
    "wav2vec2": "Wav2Vec2Model",
    "wavlm": "WavLMModel",
    "data2vec-audio": "Data2VecAudioModel",
}
SUPPORTED_MODEL_TYPES = tuple(FAMILIES)
PREPROCESSOR = "preprocessor_config.json"

# `hf download` takes the file names as arguments (`--include` takes one pattern, and is ignored once names
# are given)
FETCH_HINT = ("fetch it once on a machine with internet (a login node): `hf download {source} config.json "
              "model.safetensors preprocessor_config.json --local-dir /path/to/{name}` and set encoder.source to "
              "that directory, or `hf download {source} config.json model.safetensors "
              "preprocessor_config.json` to fill the hub cache (HF_HOME) that the compute nodes share")


@dataclass(frozen=True)
class SpeechInputs:
    """How waveforms are fed to the encoder (from its preprocessor_config.json and its architecture)."""

    do_normalize: bool = False  # zero-mean / unit-variance per segment (Wav2Vec2FeatureExtractor's do_normalize)
    padding_value: float = 0.0
    sampling_rate: int = 16000
    padded_batches: bool = False  # clips of different lengths may share a batch (padded, with an attention mask)
    read_from: str | None = None  # the preprocessor_config.json these settings come from (None: defaults)

    def prepare(self, wave: np.ndarray) -> np.ndarray:
        """One segment as the model sees it: normalised exactly as the feature extractor does."""
        wave = np.asarray(wave, dtype=np.float32)
        return Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm([wave], None)[0] if self.do_normalize else wave

    def pad(self, segments: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Prepared segments as one batch: (values, attention_mask), the mask None when nothing is padded."""
        segments = [self.prepare(s) for s in segments]
        length = max(s.size for s in segments)
        if all(s.size == length for s in segments):
            return torch.from_numpy(np.stack(segments)), None
        if not self.padded_batches:
            raise ValueError("clips of different lengths in one batch, but this encoder's output changes with padding")
        values = np.full((len(segments), length), self.padding_value, dtype=np.float32)
        mask = np.zeros((len(segments), length), dtype=np.int64)
        for i, s in enumerate(segments):
            values[i, :s.size], mask[i, :s.size] = s, 1
        return torch.from_numpy(values), torch.from_numpy(mask)


def pads_exactly(config: PretrainedConfig) -> bool:
    """Whether a padded clip (with an attention mask) gives the same outputs as the clip alone."""
    if config.model_type == "data2vec-audio":
        return config.num_conv_pos_embeddings == 1  # one positional convolution sees zeros on padded frames
    return getattr(config, "feat_extract_norm", "group") == "layer"


def speech_inputs(model) -> SpeechInputs:
    """The input settings loaded with the model, or (a model built in code) no normalisation."""
    inputs = getattr(model, "speech_inputs", None)
    return inputs if inputs is not None else SpeechInputs(padded_batches=pads_exactly(model.config))


def freeze_feature_encoder(model) -> None:
    """The model's public freeze_feature_encoder(); transformers' HubertModel has none (only its task heads
    do), so there the same call its heads make: the CNN's parameters stop requiring gradients."""
    if hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()
    else:
        model.feature_extractor._freeze_parameters()


def build_encoder(source: str, *, config: dict | None = None, overrides: dict | None = None,
                  init_seed: int = 0):
    """`source` 'random' builds the family's config (`config.model_type`, default 'hubert', plus sizes) with
    seeded random weights (a tiny stand-in for a pretrained model); anything else is a local directory or
    a hub id loaded with from_pretrained. The model carries its `speech_inputs`.

    Safetensors weights are required from the hub and preferred in a local directory (a directory with
    only pytorch_model.bin is loaded with torch's weights-only unpickler); remote code is never run.
    Under HF_HUB_OFFLINE=1 a hub id resolves from the local hub cache only.
    """
    overrides = dict(overrides or {})
    if source == "random":
        sizes = dict(config or {})
        model_type = sizes.pop("model_type", "hubert")
        _check_model_type(model_type, "encoder.config", "config key 'encoder.config.model_type'")
        _check_overrides(AutoConfig.for_model(model_type), overrides, "encoder.source random")
        cfg = AutoConfig.for_model(model_type, **{**sizes, **overrides})
        _check_adapter(cfg, "encoder.config")
        torch.manual_seed(init_seed)
        model = AutoModel.from_config(cfg)
        model.speech_inputs = SpeechInputs(padded_batches=pads_exactly(cfg))
        return model
    kind, ref = encoder_source_kind(source)
    if kind == "missing":
        raise EncoderError(f"encoder.source {source}: no such directory")
    safetensors = kind == "hub" or any(Path(ref).glob("*.safetensors"))
    try:
        model = _checked_load(ref, f"encoder.source {source}", overrides, use_safetensors=safetensors)
        model.speech_inputs = _read_inputs(ref, model.config, f"encoder.source {source}", hub=kind == "hub")
        return model
    except OSError as err:
        if kind == "local":
            raise EncoderError(f"encoder.source {ref}: cannot load a speech encoder from this directory: {err}") from err
        name = source.rsplit("/", 1)[-1]
        raise EncoderError(
            f"encoder.source {source}: not found {'in the local hub cache (HF_HUB_OFFLINE is set)' if _offline() else 'on the hub or in its cache'}"
            f" ({' '.join(str(err).split())[:300]}), and no directory of that name exists in {Path.cwd()}; "
            + FETCH_HINT.format(source=source, name=name)
        ) from err


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def materialise_encoder(settings: dict, out_dir: str | Path, sample_rate: int | None = None) -> dict:
    """Write the configured encoder to `out_dir` (config.json + model.safetensors + preprocessor_config.json,
    the settings used); return a summary. `sample_rate`: the corpus's, which the model's must equal."""
    model = build_encoder(settings["source"], config=settings.get("config"),
                          overrides=settings.get("overrides"), init_seed=settings.get("init_seed", 0))
    inputs = model.speech_inputs
    if sample_rate is not None and inputs.sampling_rate != sample_rate:
        raise EncoderError(
            f"encoder.source {settings['source']}: the model expects {inputs.sampling_rate} Hz audio (sampling_rate "
            f"of its {PREPROCESSOR}) but data.sample_rate is {sample_rate}; set data.sample_rate to {inputs.sampling_rate}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    # the settings used, written out even where the source had none, so that every run reads the same file
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=inputs.sampling_rate, padding_value=inputs.padding_value,
                             do_normalize=inputs.do_normalize,
                             return_attention_mask=inputs.padded_batches).save_pretrained(out_dir)
    cfg = model.config
    return {"source": settings["source"], "model_type": cfg.model_type, "model_class": type(model).__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_hidden_layers,
            "feat_extract_norm": getattr(cfg, "feat_extract_norm", "layer"),  # data2vec-audio: always layer norm
            "do_stable_layer_norm": getattr(cfg, "do_stable_layer_norm", False),
            "inputs": asdict(inputs)}


_PRELOADED: dict[tuple, torch.nn.Module] = {}


def _cache_key(directory: str | Path) -> tuple:
    directory = Path(directory).resolve()
    return (str(directory),) + tuple(
        (f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in sorted(directory.glob("*")) if f.is_file())


def preload_encoder(directory: str | Path) -> None:
    """Load the encoder once in the warm worker, before it forks: every child then starts from this
    copy (copy-on-write) instead of paying from_pretrained again. Keyed by the files' mtimes and sizes,
    so a rebuilt encoder is loaded afresh. Loads on the CPU and uses one thread (fork-safe)."""
    key = _cache_key(directory)
    if key not in _PRELOADED:
        _PRELOADED.clear()
        torch.set_num_threads(1)
        _PRELOADED[key] = _from_disk(directory)


def load_encoder(directory: str | Path):
    """Load the materialised encoder (offline: a local directory); in a worker child, take the
    preloaded copy (the child owns it: it is removed so a second call in one process loads afresh)."""
    preloaded = _PRELOADED.pop(_cache_key(directory), None) if _PRELOADED else None
    return preloaded if preloaded is not None else _from_disk(directory)


def _from_disk(directory: str | Path):
    label = f"encoder directory {directory}"
    model = _checked_load(str(directory), label, None, local_files_only=True)
    model.speech_inputs = _read_inputs(str(directory), model.config, label, hub=False)
    return model


def _read_inputs(ref: str, config: PretrainedConfig, label: str, *, hub: bool) -> SpeechInputs:
    """SpeechInputs from the source's preprocessor_config.json (none: no normalisation)."""
    padded = pads_exactly(config)
    if hub:
        from transformers.utils.hub import cached_file

        found = cached_file(ref, PREPROCESSOR, _raise_exceptions_for_missing_entries=False)
        if found is None and _offline():
            # not fetched, or not in the repository: unknown, and normalising wrongly would go unnoticed
            raise EncoderError(
                f"{label}: {PREPROCESSOR} is not in the local hub cache (HF_HUB_OFFLINE is set), so how the model "
                "normalises its input is unknown; " + FETCH_HINT.format(source=ref, name=ref.rsplit("/", 1)[-1])
                + " (a local directory without it is fed unnormalised audio)")
        where = f"{ref}/{PREPROCESSOR}" if found else None
    else:
        where = str(Path(ref) / PREPROCESSOR) if (Path(ref) / PREPROCESSOR).is_file() else None
    if where is None:
        return SpeechInputs(padded_batches=padded)
    extractor = AutoFeatureExtractor.from_pretrained(ref, trust_remote_code=False, local_files_only=not hub or _offline())
    if not isinstance(extractor, Wav2Vec2FeatureExtractor) or extractor.feature_size != 1:
        raise EncoderError(f"{label}: {where} describes a {type(extractor).__name__} (feature_size "
                           f"{extractor.feature_size}); the supported encoders take raw waveforms through a "
                           "Wav2Vec2FeatureExtractor with feature_size 1")
    return SpeechInputs(do_normalize=bool(extractor.do_normalize), padding_value=float(extractor.padding_value),
                        sampling_rate=int(extractor.sampling_rate), padded_batches=padded, read_from=where)


def _few(keys, n: int = 4) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def _check_model_type(model_type, label: str, where) -> None:
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise EncoderError(
            f"{label}: {where} has model_type '{model_type}', but the supported encoder families are model_type "
            + ", ".join(f"'{t}' ({c})" for t, c in FAMILIES.items())
            + ". Set encoder.source to a checkpoint of one of them.")


def _check_overrides(config: PretrainedConfig, overrides: dict, label: str) -> None:
    unknown = sorted(k for k in overrides if not hasattr(config, k))
    if unknown:
        raise EncoderError(f"{label}: encoder.overrides {', '.join(unknown)} {'is not a setting' if len(unknown) == 1 else 'are not settings'} "
                           f"of {type(config).__name__} (model_type '{config.model_type}'); check the spelling")


def _check_adapter(config: PretrainedConfig, label: str) -> None:
    if getattr(config, "add_adapter", False):
        raise EncoderError(f"{label}: the config has add_adapter: true (a convolutional adapter that shortens the "
                           "output for sequence-to-sequence models); the encoder's own frames are needed here: "
                           "set encoder.overrides.add_adapter: false or use a checkpoint without one")


def _checked_load(ref: str, label: str, overrides: dict | None, **kwargs):
    """AutoModel.from_pretrained(ref, ...) for a supported model_type, refusing what would load wrongly.

    Refused: a config.json whose model_type is not one of the supported families; weights of the model
    that the file does not provide (they would be randomly initialised); weights of the file inside the
    encoder that the model has no place for (layers beyond num_hidden_layers, another family's modules);
    weights of other shapes. Accepted: file weights outside the encoder's modules, i.e. a task or
    pre-training head such as HubertForCTC's lm_head or Wav2Vec2ForPreTraining's quantizer, and
    masked_spec_embed when time masking is off; they are not used by the encoder and are dropped.
    """
    local = {"local_files_only": True} if kwargs.get("local_files_only") else {}
    config_dict, _ = PretrainedConfig.get_config_dict(ref, **local)
    model_type = config_dict.get("model_type")
    where = Path(ref) / "config.json" if Path(ref).is_dir() else f"config.json of {ref}"
    if model_type is None:
        raise OSError(f"{where} names no model_type")
    _check_model_type(model_type, label, where)
    config = AutoConfig.from_pretrained(ref, trust_remote_code=False, **local)
    _check_overrides(config, overrides or {}, label)
    for key, value in (overrides or {}).items():
        setattr(config, key, value)
    _check_adapter(config, label)
    # ignore_mismatched_sizes: report other shapes in `info` (refused below, with the keys) instead of
    # transformers' RuntimeError that points to a table in the log
    model, info = AutoModel.from_pretrained(ref, config=config, output_loading_info=True, ignore_mismatched_sizes=True,
                                            trust_remote_code=False, **kwargs)
    own = {name for name, _ in model.named_children()} | {name for name, _ in model.named_parameters(recurse=False)}
    missing = set(info.get("missing_keys") or ())
    unexpected = {k for k in info.get("unexpected_keys") or () if k.split(".", 1)[0] in own}
    mismatched = {str(k[0]) if isinstance(k, tuple) else str(k) for k in info.get("mismatched_keys") or ()}
    if missing or unexpected or mismatched:
        weights = Path(ref) if Path(ref).is_dir() else f"the weights of {ref}"
        if isinstance(weights, Path):
            files = sorted(f.name for f in weights.iterdir() if f.suffix in (".safetensors", ".bin"))
            weights = weights / files[0] if len(files) == 1 else weights
        parts = []
        if missing:
            parts.append(f"{len(missing)} weights of the model are missing from the file ({_few(missing)}) "
                         "and would be randomly initialised")
        if unexpected:
            parts.append(f"{len(unexpected)} weights of the file have no place in the model ({_few(unexpected)}) "
                         "and would be dropped")
        if mismatched:
            parts.append(f"{len(mismatched)} weights have other shapes than the model's ({_few(mismatched)})")
        raise EncoderError(
            f"{label}: {weights} does not match a {type(model).__name__} of its config.json (model_type "
            f"'{model_type}'{', with encoder.overrides ' + str(overrides) if overrides else ''}): "
            + "; ".join(parts) + f". Use a complete {model_type} checkpoint saved with save_pretrained, and keep "
            "layer sizes and counts out of encoder.overrides.")
    return model
