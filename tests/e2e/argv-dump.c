/* The e2e's argv recorder: writes its argv, each argument followed by a NUL byte, to
 * /var/lib/argv-dump.out, so that a test can compare what systemd really ran with what
 * cri-migrate's unit model says it runs (tests/e2e/unit_forms.py). Built static with gcc. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    FILE *f = fopen("/var/lib/argv-dump.out", "wb");
    if (!f)
        return 1;
    for (int i = 0; i < argc; i++)
        fwrite(argv[i], 1, strlen(argv[i]) + 1, f);
    return fclose(f) == 0 ? 0 : 1;
}
