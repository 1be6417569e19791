# Write the bytes of IN as a C array NAME (and NAME_len) in OUT: the model files of
# models/data/ are compiled into the augur binary, so `augur serve --demo` needs no data files.
file(READ ${IN} HEX HEX)
string(LENGTH "${HEX}" HEXLEN)
math(EXPR NBYTES "${HEXLEN} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," BYTES "${HEX}")
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){16})" "\\1\n" BYTES "${BYTES}")
file(WRITE ${OUT} "/* generated from ${IN}: do not edit */\n#include <stddef.h>\n#include <stdint.h>\nextern const uint8_t ${NAME}[];\nextern const size_t ${NAME}_len;\nconst uint8_t ${NAME}[] = {\n${BYTES}0x00};\nconst size_t ${NAME}_len = ${NBYTES};\n")
