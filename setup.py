"""The one compiled part: aaa._fastauth, the cached-Accept Access-Request
path (aaa/_fastauth.c, see aaa.fastpath). Optional: where no C compiler or
Python headers are present the install goes on and the server answers every
request on the Python path, as before (``abonent serve radius`` says so)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("aaa._fastauth", ["aaa/_fastauth.c"], optional=True,
                             extra_compile_args=["-O2"])])
