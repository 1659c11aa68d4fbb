# Install rules: headers, libraries, the CMake package and pkg-config files.
#
# One source tree, three installable variants, each built in its own build directory:
#   plain (build/release)            libsluice.a/.so        sluice.pc        sluice::sluice
#   race  (build/tsan, thread)       libsluice-race.a/.so   sluice-race.pc   sluice::race
#   asan  (build/asan, address+ub)   libsluice-asan.a/.so   sluice-asan.pc   sluice::asan
# The plain build installs everything (headers, sluiceConfig.cmake); a sanitizer build installs
# only its own libraries, pkg-config file and CMake targets file, as the install component
# "variant" (`cmake --install build/tsan --component variant`). The variants carry their
# sanitizer flags to consumers: pkg-config Cflags/Libs, and INTERFACE compile/link options on
# the imported targets, because a TSan library linked into an uninstrumented program misses
# every race in the program's own code (and ASan needs its runtime linked first).

if(SLUICE_SANITIZE STREQUAL "thread")
    set(SLUICE_VARIANT race)
    set(SLUICE_VARIANT_FLAGS -fsanitize=thread -fno-omit-frame-pointer)
elseif(SLUICE_SANITIZE STREQUAL "address")
    set(SLUICE_VARIANT asan)
    set(SLUICE_VARIANT_FLAGS -fsanitize=address,undefined -fno-omit-frame-pointer)
else()
    set(SLUICE_VARIANT "")
    set(SLUICE_VARIANT_FLAGS "")
endif()

# Private dependencies, for static links: pkg-config modules (Requires.private) and plain
# libraries (Libs.private). An optional part that links a library into libsluice appends its
# pkg-config module to SLUICE_PC_REQUIRES_PRIVATE before this file is included (e.g.
# `list(APPEND SLUICE_PC_REQUIRES_PRIVATE libcurl)`); hiredis is added here.
if(HIREDIS_FOUND)
    list(APPEND SLUICE_PC_REQUIRES_PRIVATE hiredis)
endif()
list(REMOVE_DUPLICATES SLUICE_PC_REQUIRES_PRIVATE)
string(REPLACE ";" ", " SLUICE_PC_REQUIRES_PRIVATE "${SLUICE_PC_REQUIRES_PRIVATE}")
string(STRIP "${SLUICE_PC_LIBS_PRIVATE_EXTRA} -lpthread -lm" SLUICE_PC_LIBS_PRIVATE)

file(RELATIVE_PATH SLUICE_PC_TO_PREFIX ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
string(REGEX REPLACE "/$" "" SLUICE_PC_TO_PREFIX "${SLUICE_PC_TO_PREFIX}")
set(SLUICE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/sluice)

if(SLUICE_VARIANT STREQUAL "")
    set(SLUICE_PC_NAME sluice)
    set(SLUICE_PC_LIB sluice)
    set(SLUICE_PC_FLAGS "")
    install(TARGETS sluice sluice_static EXPORT sluiceTargets
            LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
            ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
    install(DIRECTORY include/sluice DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
    install(EXPORT sluiceTargets NAMESPACE sluice:: DESTINATION ${SLUICE_CMAKE_DIR})
    configure_package_config_file(cmake/sluiceConfig.cmake.in
        ${PROJECT_BINARY_DIR}/sluiceConfig.cmake INSTALL_DESTINATION ${SLUICE_CMAKE_DIR})
    write_basic_package_version_file(${PROJECT_BINARY_DIR}/sluiceConfigVersion.cmake
        COMPATIBILITY SameMinorVersion)
    install(FILES ${PROJECT_BINARY_DIR}/sluiceConfig.cmake
                  ${PROJECT_BINARY_DIR}/sluiceConfigVersion.cmake
            DESTINATION ${SLUICE_CMAKE_DIR})
    configure_file(cmake/sluice.pc.in ${PROJECT_BINARY_DIR}/sluice.pc @ONLY)
    install(FILES ${PROJECT_BINARY_DIR}/sluice.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
else()
    set(SLUICE_PC_NAME sluice-${SLUICE_VARIANT})
    set(SLUICE_PC_LIB sluice-${SLUICE_VARIANT})
    string(REPLACE ";" " " SLUICE_PC_FLAGS "${SLUICE_VARIANT_FLAGS}")
    # sluice::race / sluice::race_static (sluice::asan / sluice::asan_static)
    set_target_properties(sluice PROPERTIES OUTPUT_NAME sluice-${SLUICE_VARIANT}
                                            EXPORT_NAME ${SLUICE_VARIANT})
    set_target_properties(sluice_static PROPERTIES OUTPUT_NAME sluice-${SLUICE_VARIANT}
                                                   EXPORT_NAME ${SLUICE_VARIANT}_static)
    foreach(t sluice sluice_static)
        target_compile_options(${t} INTERFACE $<INSTALL_INTERFACE:${SLUICE_VARIANT_FLAGS}>)
        target_link_options(${t} INTERFACE $<INSTALL_INTERFACE:${SLUICE_VARIANT_FLAGS}>)
    endforeach()
    install(TARGETS sluice sluice_static EXPORT sluiceVariantTargets COMPONENT variant
            LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
            ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
    install(EXPORT sluiceVariantTargets NAMESPACE sluice:: COMPONENT variant
            FILE sluice-${SLUICE_VARIANT}-targets.cmake DESTINATION ${SLUICE_CMAKE_DIR})
    configure_file(cmake/sluice.pc.in ${PROJECT_BINARY_DIR}/${SLUICE_PC_NAME}.pc @ONLY)
    install(FILES ${PROJECT_BINARY_DIR}/${SLUICE_PC_NAME}.pc COMPONENT variant
            DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endif()
