"""Saliency of a dm-dt image: how a class probability moves when one image pixel moves.

The model takes uint8 images, so there is no gradient with respect to its input to ask Keras for.
:func:`finite_difference_saliency` estimates it by finite differences instead: every pixel of
one object's image is moved by ``step`` counts, alone, and all the copies go through the model in
one batched predict. The result is in probability per unit of the [0, 1] image scale the network
sees after its Rescaling layer, so it can be compared with a gradient taken there.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from udfs.kernels.model_inputs import DMDT_INPUT

#: Default finite-difference step, in uint8 image counts (16 / 255 of the [0, 1] scale).
DEFAULT_STEP_COUNTS = 16
_PIXEL_MAX = 255


def finite_difference_saliency(
    classifier,
    inputs: Mapping[str, np.ndarray],
    index: int,
    class_index: int,
    step: int = DEFAULT_STEP_COUNTS,
    batch_size: int = 256,
) -> npt.NDArray[np.float64]:
    """Finite-difference derivative of one class probability with respect to each image pixel.

    Pixel by pixel, the image of object ``index`` gets ``step`` counts added (every other pixel
    and every other model input unchanged); a pixel closer than ``step`` to 255 has ``step``
    subtracted instead (a backward difference), so every difference is over exactly ``step``.

    Parameters
    ----------
    classifier : udfs.model.classifier.Classifier
        The loaded model.
    inputs : dict of str to array
        Model inputs of one or more objects, as ``ModelCard.model_inputs`` makes them; the
        :data:`~udfs.kernels.model_inputs.DMDT_INPUT` images are uint8, shape (n, n_dm, n_dt,
        n_bands).
    index : int
        Which object of ``inputs``.
    class_index : int
        Which model output (class, in ``classifier.classes`` order).
    step : int
        Pixel change, uint8 counts, 1..255.
    batch_size : int
        Objects per model call.

    Returns
    -------
    float64 array, shape (n_dm, n_dt, n_bands)
        (p_moved - p) / (step / 255): change of the class probability per unit of the [0, 1]
        image scale, for each pixel.

    Examples
    --------
    >>> sal = finite_difference_saliency(clf, inputs, index=0, class_index=1)  # doctest: +SKIP
    >>> sal.shape  # doctest: +SKIP
    (22, 24, 3)
    """
    if not 1 <= step <= _PIXEL_MAX:
        raise ValueError(f"finite_difference_saliency: step must be in 1..255, got {step}")
    images = np.asarray(inputs[DMDT_INPUT])
    if images.dtype != np.uint8 or images.ndim != 4:
        raise TypeError(
            f"finite_difference_saliency: {DMDT_INPUT} must be uint8 of shape "
            f"(n, n_dm, n_dt, n_bands), got {images.dtype} {images.shape}"
        )
    if not 0 <= index < images.shape[0]:
        raise IndexError(
            f"finite_difference_saliency: index must be in 0..{images.shape[0] - 1}, got {index}"
        )
    n_classes = len(classifier.classes)
    if not 0 <= class_index < n_classes:
        raise IndexError(
            f"finite_difference_saliency: class_index must be in 0..{n_classes - 1}, "
            f"got {class_index}"
        )
    image = images[index]
    n_pixels = image.size
    # Row 0 is the unchanged image; row 1 + k has flat pixel k moved.
    moved = np.repeat(image.reshape(1, -1), n_pixels + 1, axis=0).astype(np.int16)
    flat = image.reshape(-1).astype(np.int16)
    backward = flat + step > _PIXEL_MAX
    pixels = np.arange(n_pixels)
    moved[1 + pixels, pixels] = np.where(backward, flat - step, flat + step)
    batch = {
        name: np.repeat(np.asarray(values)[index : index + 1], n_pixels + 1, axis=0)
        for name, values in inputs.items()
        if name != DMDT_INPUT
    }
    batch[DMDT_INPUT] = moved.astype(np.uint8).reshape(n_pixels + 1, *image.shape)
    probability = classifier.predict(batch, batch_size=batch_size)[:, class_index]
    difference = probability[1:].astype(np.float64) - float(probability[0])
    difference[backward] *= -1.0
    return (difference / (step / _PIXEL_MAX)).reshape(image.shape)
