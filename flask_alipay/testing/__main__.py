"""``python -m flask_alipay.testing``: the Alipay emulator, as ``flask alipay emulator``."""

from flask_alipay.testing.cli import emulator_command

if __name__ == "__main__":
    emulator_command(prog_name="python -m flask_alipay.testing")
