"""The `lstm-music` command (placeholder until the CLI issue lands)."""
import argparse


def main(argv=None):
    parser = argparse.ArgumentParser(prog="lstm-music")
    parser.parse_args(argv)
    return 0
