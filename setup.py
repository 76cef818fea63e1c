"""Only for the optional compiled parts; everything else is in pyproject.toml.

``schemas._avroenc`` (Avro encode/decode) and ``connectors._copytext`` (the journal's COPY text).
When no C compiler is available the build skips them and evledger uses fastavro and the Python
formatter (``connectors.ledger_store._entry_lines``) instead.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "schemas._avroenc",
            ["schemas/_avroenc.c"],
            include_dirs=["native"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
        Extension(
            "connectors._copytext",
            ["connectors/_copytext.c"],
            include_dirs=["native"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
    ]
)
