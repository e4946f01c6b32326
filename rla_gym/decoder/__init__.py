"""The frame decoder: patch features -> RGB frames, to *see* dreamed states.

``FrameDecoder`` is a small convolutional network trained on a dataset's real ``(features,
frame)`` pairs (``rla-gym train-decoder``); bundles may ship one (``rla-gym add-decoder``) and the
dreamed envs then render decoded frames instead of the nearest real frame of a bank.
"""

from rla_gym.decoder.config import DecoderConfig
from rla_gym.decoder.model import FrameDecoder, psnr

__all__ = ["DecoderConfig", "FrameDecoder", "psnr"]
