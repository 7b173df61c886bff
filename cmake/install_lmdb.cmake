# `cmake --install` support for the LMDB front end, component "lmdb": the
# static library (cowbackup::lmdb), the C API header cowbackup/lmdb.h and
# the C++ wrapper's lmdb.hpp, exported as cowbackupLmdbTargets.cmake, which
# cowbackupConfig.cmake (cmake/install.cmake) loads when it is installed.
# Included from lmdb/CMakeLists.txt.
include(GNUInstallDirs)

install(TARGETS cowbackup_lmdb_pkg EXPORT cowbackupLmdbTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT lmdb)
install(FILES
  ${PROJECT_SOURCE_DIR}/include/cowbackup/lmdb.h
  ${PROJECT_SOURCE_DIR}/include/cowbackup/lmdb.hpp
  ${PROJECT_SOURCE_DIR}/include/cowbackup/status.h
  ${PROJECT_SOURCE_DIR}/include/cowbackup/job.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/cowbackup COMPONENT lmdb)
install(EXPORT cowbackupLmdbTargets
  NAMESPACE cowbackup::
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/cowbackup COMPONENT lmdb)
# The package config, also in this component (cmake/install.cmake
# generates it), so that --component lmdb alone gives a working package.
install(FILES ${PROJECT_BINARY_DIR}/cowbackupConfig.cmake
              ${PROJECT_BINARY_DIR}/cowbackupConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/cowbackup COMPONENT lmdb)
