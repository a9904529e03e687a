"""What a loss class takes and what its temperature means, declared once on the class.

The registry, :func:`~lightly_temperature.adapters.use_loss`, the ready modules, the study and
the command line read these declarations instead of keeping lists of loss names.

Example:
    >>> from lightly_temperature import SimpleLoss
    >>> SimpleLoss.capabilities.softmax_temperature  # tau only rescales the Simple loss
    False
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LossCapabilities:
    """Declared on each loss class as ``capabilities``.

    Attributes:
        softmax_temperature: ``temperature`` is the softmax temperature of a contrastive loss
            (it changes which negatives count). ``False``: it only rescales the loss and its
            gradient, like a learning rate (the Simple family); such a loss is run once, not
            per temperature, by the study, and ``use_loss`` does not carry a temperature to or
            from it.
        hard_negatives: takes ``hard_negatives`` (K or the fraction alpha).
        memory_bank: takes ``memory_bank_size`` (MoCo mode).
        gather_distributed: takes ``gather_distributed`` (negatives from every rank).
        sample_indices: ``forward`` takes ``indices=``, the data set indices of the batch's
            samples (a memory bank indexed by sample, a temperature per sample). The ready
            modules pass them when the batch carries them
            (:class:`~lightly_temperature.data.IndexedDataset`).
        sample_memory_bank: takes ``sample_memory_bank``, a memory bank indexed by sample
            (:class:`~lightly_temperature.losses.sample_memory_bank.SampleMemoryBank`, NPID).
    """

    softmax_temperature: bool = True
    hard_negatives: bool = False
    memory_bank: bool = True
    gather_distributed: bool = True
    sample_indices: bool = False
    sample_memory_bank: bool = False
