# Write the bytes of IN as a C array alert_default_rules in OUT.
file(READ ${IN} HEX HEX)
string(LENGTH "${HEX}" HEXLEN)
math(EXPR NBYTES "${HEXLEN} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," BYTES "${HEX}")
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){16})" "\\1\n" BYTES "${BYTES}")
file(WRITE ${OUT} "/* generated from rules/augur-defaults.yml: do not edit */\n#include <stddef.h>\nextern const char alert_default_rules[];\nextern const size_t alert_default_rules_len;\nconst char alert_default_rules[] = {\n${BYTES}0x00};\nconst size_t alert_default_rules_len = ${NBYTES};\n")
