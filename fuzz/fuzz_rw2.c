/*
 * fuzz_rw2.c — libFuzzer target for the remote-write 2.0 decoder
 * (rw_decode_v2). The harness is fuzz_rw1.c's, compiled for version 2.
 */
#define FUZZ_RW_VERSION 2
#include "fuzz_rw1.c"
