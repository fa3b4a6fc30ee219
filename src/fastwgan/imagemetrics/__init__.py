"""Offline image metrics for the built-in digit data sets and any image set.

* ``image_metrics(generated, "mnist" | "stacked-mnist")``: FD with its floor, class / mode
  coverage and KL to uniform, from a digit classifier fastwgan trains and caches itself
  (``evaluate.py``, ``classifier.py``, ``classifier_cache.py``);
* ``frechet_distance`` (``frechet.py``); ``class_coverage`` / ``stacked_modes`` (``modes.py``);
* ``fid_kid_is``: FID / KID / IS through torchmetrics with Inception-v3 or any feature extractor
  (``inception.py``).
"""
from .classifier import DigitClassifier, as_digit_batch
from .classifier_cache import cache_dir, digit_classifier_info, load_digit_classifier
from .evaluate import IMAGE_METRIC_DATA, classify_digits, digit_features, image_metrics
from .frechet import feature_stats, frechet_distance
from .inception import InceptionUnavailableError, fid_kid_is, inception_v3, inception_weights_path
from .modes import class_coverage, kl_to_uniform, stacked_mode_ids, stacked_modes

__all__ = [
    "image_metrics", "IMAGE_METRIC_DATA", "frechet_distance", "feature_stats", "class_coverage", "stacked_modes",
    "stacked_mode_ids", "kl_to_uniform", "fid_kid_is", "inception_v3", "inception_weights_path",
    "InceptionUnavailableError", "DigitClassifier", "as_digit_batch", "load_digit_classifier",
    "digit_classifier_info", "cache_dir", "digit_features", "classify_digits",
]
