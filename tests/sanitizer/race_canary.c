/* A deliberate data race: two threads increment a plain int with no synchronisation.
 * Registered only in the TSan build, where it must fail with a race report. If this test ever
 * passes there, the race gate is broken and every "TSan clean" claim is void. */
#include <pthread.h>
#include <stdio.h>

static int counter; /* racy on purpose */

static void *bump(void *arg)
{
    for (int i = 0; i < 1000; i++)
        counter++;
    return arg;
}

int main(void)
{
    pthread_t a, b;
    pthread_create(&a, NULL, bump, NULL);
    pthread_create(&b, NULL, bump, NULL);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    printf("counter=%d\n", counter);
    return 0;
}
