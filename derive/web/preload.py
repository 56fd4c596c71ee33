"""Imported once by the forkserver that workers are forked from: derive's modules and one whole
request's work, so that every worker, the replacements included, starts warm (about 1 s saved on
the first request a new worker serves)."""
from . import tasks

tasks.warm({})
