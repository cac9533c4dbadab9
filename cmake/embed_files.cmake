# Embeds data files (schemas, mapping definitions) in the binary as string constants.
#
#   passerelle_embed_files(<out.cpp> <function> FILES <abs paths...> BASE <dir>)
#
# writes <out.cpp> defining
#   const std::vector<passerelle::EmbeddedFile>& <function>();
# (declared in gateway/common/embedded_file.h style: name relative to BASE, and the contents).
# The generated file is rewritten only when a listed file changes.
function(passerelle_embed_files out function)
  cmake_parse_arguments(E "" "BASE" "FILES" ${ARGN})
  string(REPLACE ";" "|" files "${E_FILES}")
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DFUNCTION=${function} -DBASE=${E_BASE}
            "-DFILES=${files}" -P ${PASSERELLE_EMBED_SCRIPT}
    DEPENDS ${E_FILES} ${PASSERELLE_EMBED_SCRIPT}
    COMMENT "Embedding ${function}" VERBATIM)
endfunction()
set(PASSERELLE_EMBED_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/embed_files_script.cmake)
