// (not written yet)
#include "common.h"

namespace tg {

void register_elementwise(py::module_&) {}

}  // namespace tg
