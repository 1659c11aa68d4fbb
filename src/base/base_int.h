/* Private to sluice: hooks between base and the modules above it. */
#ifndef SLUICE_BASE_INT_H
#define SLUICE_BASE_INT_H

#include "sluice/common.h"

/* Registers the one function called after the test clock moves (the ctx timer thread uses it
 * to re-check deadlines against test time). NULL removes it. Threads: any. */
void sl__clock_set_advance_hook(void (*fn)(void));

#endif
