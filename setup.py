"""Only for the optional compiled Avro encoder; everything else is in pyproject.toml.

When no C compiler is available the build skips it and evledger uses fastavro instead.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "schemas._avroenc", ["schemas/_avroenc.c"], optional=True, extra_compile_args=["-O2"]
        ),
    ]
)
