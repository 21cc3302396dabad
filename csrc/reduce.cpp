// (not written yet)
#include "common.h"

namespace tg {

void register_reduce(py::module_&) {}

}  // namespace tg
