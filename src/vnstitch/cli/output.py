"""Output helpers for subcommands: the library's :mod:`vnstitch.output`, re-exported.

The helpers live in the library so that benchmarks and the simulator's stories can use
them without importing the CLI; subcommands keep importing them from here.
"""

from vnstitch.output import (
    StackedTable,
    add_json_flag,
    console,
    fmt,
    print_json,
    progress,
    table,
)

__all__ = ["StackedTable", "add_json_flag", "console", "fmt", "print_json", "progress",
           "table"]
